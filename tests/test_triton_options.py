"""The Triton backend's options (``backends/triton/options.py``): validated at
``pccc.compile`` into one frozen value, refused by name when unknown or ill-typed, shown in
``model.artifacts["options"]``, kept by the module and by a saved ``.pccm`` file."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends import registry  # noqa: E402
from pccc.backends.triton.options import DEFAULT_TILES, TritonOptions  # noqa: E402
from pccc.ir.errors import PcccError  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
NAMES = TritonOptions.names()


def test_unknown_option_is_refused_with_the_valid_ones():
    c = _dense_circuit()
    with pytest.raises(PcccError) as e:
        pccc.compile(c, backend="triton", device=DEV, cuda_graph=False)
    msg = str(e.value)
    assert "'cuda_graph'" in msg and all(n in msg for n in NAMES)
    with pytest.raises(PcccError, match="unknown options 'a', 'b'"):
        registry.check_options("triton", {"b": 1, "a": 2, "precision": "fp32"})


@pytest.mark.parametrize("name, value", [
    ("cuda_graphs", 1), ("overlap_em", "no"), ("parallel_jit", None), ("jit_threads", 2.0),
    ("jit_threads", -1), ("upload_threads", True), ("small_part", "big"),
    ("precision", "fp16"), ("tiles", 64), ("tiles", {"fwd": 48}), ("tiles", {"nope": 32}),
    ("tiles", {"fwd": True})])
def test_ill_typed_option_is_refused_by_name(name, value):
    with pytest.raises(PcccError, match=f"option '?{name}'?"):
        registry.check_options("triton", {name: value})
    with pytest.raises(PcccError, match=name):
        TritonOptions.from_kwargs(**{name: value})


@settings(max_examples=30, deadline=None)
@given(graphs=st.booleans(), threads=st.integers(0, 64), precision=st.sampled_from(
    ["tf32", "fp32", "bf16"]), tiles=st.dictionaries(st.sampled_from(sorted(DEFAULT_TILES)),
                                                     st.integers(0, 9).map(lambda k: 1 << k)))
def test_options_round_trip_through_their_dict_and_text(graphs, threads, precision, tiles):
    o = TritonOptions.from_kwargs(cuda_graphs=graphs, jit_threads=threads,
                                  precision=precision, tiles=tiles)
    assert o.tiles == {**DEFAULT_TILES, **tiles}
    assert TritonOptions.from_kwargs(**o.as_dict()) == o
    lines = dict(line.split(" = ", 1) for line in o.to_text().splitlines())
    assert list(lines) == list(NAMES)
    assert lines["cuda_graphs"] == str(graphs) and lines["jit_threads"] == str(threads)
    assert lines["tiles"] == ",".join(f"{k}={v}" for k, v in o.tiles.items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.precision = "fp32"  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.tiles["fwd"] = 8  # type: ignore[index]


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_the_module_keeps_its_options_shows_them_and_saves_them(tmp_path):
    pytest.importorskip("triton")
    c = _dense_circuit()
    m = pccc.compile(c, backend="triton", device=DEV, precision="fp32", cuda_graphs=False,
                     upload_threads=2, tiles={"fwd": 64})
    assert isinstance(m.options, TritonOptions)
    assert m.options == TritonOptions(precision="fp32", cuda_graphs=False, upload_threads=2,
                                      tiles={"fwd": 64})
    text = m.artifacts["options"]
    assert text == m.options.to_text()
    assert "precision = fp32\n" in text and "cuda_graphs = False\n" in text
    assert "fwd=64," in text and "upload_threads = 2\n" in text
    assert not m.executor.use_graphs and m.executor.precision == "fp32"
    x = torch.randint(0, 5, (6, 4))
    path = tmp_path / "m.pccm"
    pccc.save(m, path)
    back = pccc.load_module(path, device=DEV)
    assert back.options == m.options
    torch.testing.assert_close(back(x), m(x))
    # the file records the options as given, and a torch load drops the Triton ones
    assert pccc.load_module(path, backend="torch").backend_name == "torch"
