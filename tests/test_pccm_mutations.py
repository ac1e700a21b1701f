"""Mutated ``.pccm`` artifacts: refused with a clean error naming the member or field, never a
traceback, a crash or a silently wrong result.

Careless edits (checksums left as they were) must be refused or give exactly the original
log-likelihoods. Hostile edits (checksums recomputed) exercise the typed manifest and the plan
verifier: refused, or a module that computes what its plan says, without NaN. The campaigns
run 30 mutations each in CI and 1000 in the ``thorough`` hypothesis profile.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pccc
from pccc.archive import ArtifactError
from pccc.artifact import write_artifact
from pccc.backends.reference.plan_eval import plan_log_likelihood
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, PcccError, VerifyError
from tests.pccm_mutate import archive, members, mutated, reseal

torch.set_num_threads(1)

X = np.array([[0, 1, 3], [2, -1, -1], [-1, 0, 4], [1, 1, 0]])
XG = np.array([[0.5, 1.0], [np.nan, 0.0], [-0.5, np.nan], [2.5, 1.0]])  # (NaN: missing)


def _trained() -> Any:
    """A float64 module after one EM step, saved with its exact state."""
    b = CircuitBuilder(rng=5)
    a = b.input(0, "categorical", n=3, card=3)
    c = b.input(1, "bernoulli", n=3)
    s = b.sum([b.product([a, c])], n=2)
    d = b.input(2, "binomial", n=2, total=4)
    model = pccc.compile(b.build(b.sum([b.product([s, d])])), dtype=torch.float64)
    model(torch.as_tensor(X)).sum().backward()
    pccc.optim.MiniBatchEM(model, step_size=0.7, pseudocount=0.3).step()
    return model


def _multi_root(path: Path) -> None:
    """Three roots over shared inputs, written as ``pccc compile`` does (no state)."""
    b = CircuitBuilder(rng=2)
    x = [b.input(v, "categorical", n=2, card=5) for v in range(3)]
    circuit = b.build(b.sum([b.product(x)], n=3))
    model = pccc.compile(circuit, dtype=torch.float64)
    write_artifact(path, model.plan, circuit, backend="torch", dtype="float64",
                   pipeline=model.pipeline, options={"training": True})


def _gaussian() -> Any:
    b = CircuitBuilder(rng=4)
    g = b.input(0, "gaussian", n=2)
    c = b.input(1, "bernoulli", n=2)
    return pccc.compile(b.build(b.sum([b.product([g, c])])), dtype=torch.float64)


def _ll(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


@pytest.fixture(scope="module")
def arts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, np.ndarray, Any]]:
    """name -> (file bytes, data, log-likelihoods of the file as written)."""
    d = tmp_path_factory.mktemp("arts")
    pccc.save(_trained(), d / "trained.pccm")
    _multi_root(d / "roots.pccm")
    pccc.save(_gaussian(), d / "gauss.pccm")
    out = {}
    for name, x in (("trained", X), ("roots", X), ("gauss", XG)):
        path = d / f"{name}.pccm"
        out[name] = (path.read_bytes(), x, _ll(pccc.load_module(path), x))
    return out


def _load(path: Path, x: np.ndarray) -> tuple[Any, np.ndarray] | None:
    """The module and its log-likelihoods, or None for a clean refusal (any other exception
    fails the test)."""
    try:
        model = pccc.load_module(path, backend="torch")
    except PcccError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
        event(f"refused: {str(e)[len(str(path)) + 2:].split(':')[0]}")
        return None
    return model, _ll(model, x)


CAMPAIGN = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow], deadline=None)


@CAMPAIGN
@given(data=st.data())
def test_careless_edits_are_refused_or_change_nothing(arts, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(arts)), label="artifact")
    raw, x, want = arts[name]
    path = tmp_path / "m.pccm"
    path.write_bytes(data.draw(mutated(raw, hostile=False)))
    got = _load(path, x)
    event("refused" if got is None else "loaded")
    if got is not None:
        np.testing.assert_array_equal(got[1], want)


@CAMPAIGN
@given(data=st.data())
def test_hostile_edits_are_refused_or_computed_as_the_plan_says(arts, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(arts)), label="artifact")
    raw, x, _ = arts[name]
    path = tmp_path / "m.pccm"
    path.write_bytes(data.draw(mutated(raw, hostile=True)))
    got = _load(path, x)
    event("refused" if got is None else "loaded")
    if got is None:
        return
    model, ll = got
    assert not np.isnan(ll).any()
    miss = np.isnan(x) if x.dtype.kind == "f" else x == -1
    ref = plan_log_likelihood(model.current_plan(), np.where(miss, 0, x), miss)
    np.testing.assert_allclose(ll, ref, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------- the cases of the issue, one by one
def _edit(arts: dict, tmp_path: Path, fn: Any, name: str = "trained",
          seal: bool = True) -> Path:
    """The artifact with ``fn`` applied to its members (a dict) and, by default, resealed."""
    m = members(arts[name][0])
    m = fn(m)
    path = tmp_path / "m.pccm"
    path.write_bytes(archive(list((reseal(m) if seal else m).items())))
    return path


def _manifest(fn: Any) -> Any:
    def edit(m: dict[str, bytes]) -> dict[str, bytes]:
        man = json.loads(m["manifest.json"])
        fn(man)
        return dict(m, **{"manifest.json": json.dumps(man).encode()})
    return edit


def _first_input(man: dict) -> dict:
    return man["plan"]["fields"]["input_layers"]["__tuple__"][0]["fields"]


def _array(name: str, fn: Any) -> Any:
    def edit(m: dict[str, bytes]) -> dict[str, bytes]:
        arr = np.load(io.BytesIO(m[name])).copy()
        buf = io.BytesIO()
        np.save(buf, fn(arr))
        return dict(m, **{name: buf.getvalue()})
    return edit


@pytest.mark.parametrize("start,match", [(50_000_000, "node_start"), (-3, "node_start"),
                                         (0, "node_start")])
def test_input_slots_out_of_range_are_refused(arts, tmp_path, start, match):
    path = _edit(arts, tmp_path, _manifest(lambda m: _first_input(m).update(node_start=start)))
    with pytest.raises(ArtifactError, match=match) as e:
        pccc.load_module(path)
    assert e.value.field == "plan"


def test_root_slot_zero_and_past_the_end_are_refused(arts, tmp_path):
    for root in (0, 10**6):
        path = _edit(arts, tmp_path, _manifest(
            lambda m, r=root: m["plan"]["fields"].update(root_slot=r)))
        with pytest.raises(ArtifactError, match="root slot"):
            pccc.load_module(path)


@pytest.mark.parametrize("value", [np.inf, np.nan, -0.5])
def test_weights_and_input_parameters_outside_their_domain_are_refused(arts, tmp_path, value):
    def bad_weight(a):
        a[-1] = value
        return a

    path = _edit(arts, tmp_path, _array("plan.params.npy", bad_weight), name="roots")
    with pytest.raises(ArtifactError, match="weights must be finite"):
        pccc.load_module(path)
    path = _edit(arts, tmp_path, _array("plan.input_params.npy", bad_weight), name="roots")
    with pytest.raises(ArtifactError, match="categorical"):
        pccc.load_module(path)


def test_sizes_are_checked_before_anything_is_allocated(arts, tmp_path):
    path = _edit(arts, tmp_path, _manifest(
        lambda m: m["plan"]["fields"].update(num_node_slots=10**12)))
    with pytest.raises(ArtifactError, match="num_node_slots"):
        pccc.load_module(path)

    def huge_header(m):
        raw = m["plan.params.npy"]
        n = len(np.load(io.BytesIO(raw)))
        return dict(m, **{"plan.params.npy": raw.replace(f"({n},)".encode(),
                                                         b"(100000000000,)", 1)})

    path = _edit(arts, tmp_path, huge_header)
    with pytest.raises(ArtifactError, match="plan.params.npy: .*needs 800000000000 bytes"):
        pccc.load_module(path)


def test_missing_and_unknown_fields_and_options_are_named(arts, tmp_path):
    cases = [
        (lambda m: m["plan"]["fields"].pop("num_roots"), "plan.num_roots: missing"),
        (lambda m: m["plan"]["fields"].update(colour=1), "plan.colour: not a field"),
        (lambda m: m["options"].update(bogus=1), "options: .*no option 'bogus'"),
        (lambda m: m.pop("state"), "field state: missing"),
        (lambda m: _first_input(m).update(vars={"__array__": "plan.params.npy"}),
         "vars: member plan.params.npy holds <f8, expected <i8"),
        (lambda m: m["options"].update(nested=[[[1]]]), "options.nested: .*not a plain value"),
        (lambda m: m.update(options=json.loads("[" * 200 + "]" * 200)),
         "nested 201 deep; the limit is 64"),
    ]
    for fn, match in cases:
        path = _edit(arts, tmp_path, _manifest(fn))
        with pytest.raises(ArtifactError, match=match):
            pccc.load_module(path)


def test_a_state_of_the_wrong_shape_or_with_nan_is_refused(arts, tmp_path):
    path = _edit(arts, tmp_path, _array("state.sum_logits.npy", lambda a: a[:-1]))
    with pytest.raises(ArtifactError, match="state.sum_logits"):
        pccc.load_module(path)
    path = _edit(arts, tmp_path, _array("state.sum_logits.npy",
                                        lambda a: np.where(a == a, np.nan, a)))
    with pytest.raises(ArtifactError, match="state.sum_logits: holds NaN"):
        pccc.load_module(path)


def test_an_edit_without_its_checksum_is_refused(arts, tmp_path):
    def nudge(a):
        a[-1] = a[-1] * 0.5  # an in-range weight: only the checksum tells
        return a

    path = _edit(arts, tmp_path, _array("state.sum_logits.npy", nudge), seal=False)
    with pytest.raises(ArtifactError, match="state.sum_logits.npy: checksum mismatch"):
        pccc.load_module(path)


def test_corrupt_members_and_archives_are_named(arts, tmp_path):
    raw = arts["trained"][0]
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        info = z.getinfo("plan.params.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    bad = bytearray(raw)
    for i in range(start, start + min(info.compress_size, 8)):
        bad[i] ^= 0x5A
    path = tmp_path / "m.pccm"
    path.write_bytes(bytes(bad))
    with pytest.raises(ArtifactError, match="member plan.params.npy: corrupt"):
        pccc.load_module(path)
    m = members(raw)
    path.write_bytes(archive(list(m.items()) + [("plan.params.npy", b"x")]))
    with pytest.raises(ArtifactError, match="plan.params.npy: stored twice"):
        pccc.load_module(path)


def test_an_older_format_version_is_refused(arts, tmp_path):
    path = _edit(arts, tmp_path, _manifest(lambda m: m.update(format_version=1)))
    with pytest.raises(ArtifactError, match="module format 1.*recompile"):
        pccc.load_module(path)


def test_the_command_line_refuses_a_bad_artifact_in_two_lines(arts, tmp_path, capsys):
    path = _edit(arts, tmp_path, _manifest(lambda m: _first_input(m).update(node_start=-3)))
    data = tmp_path / "x.npy"
    np.save(data, X)
    for argv in (["eval", str(path), "--data", str(data)], ["info", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pccc: error: {path}: manifest field plan: input layer 0")
        assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err


def _broken_plan() -> Any:
    import dataclasses

    plan = pccc.compile(_trained().source_circuit).plan
    ly = dataclasses.replace(plan.input_layers[0], node_start=50_000_000)
    return dataclasses.replace(plan, input_layers=(ly,) + plan.input_layers[1:])


def test_no_backend_builds_a_module_from_a_plan_that_fails_the_verifier(monkeypatch):
    from pccc.backends import registry

    plan = _broken_plan()
    with pytest.raises(VerifyError, match="input layer 0"):
        registry.get("torch")(plan)
    triton = pytest.importorskip("triton")
    assert triton
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(VerifyError, match="input layer 0"):
        registry.get("triton")(plan, device="cpu")


def test_eval_checks_data_against_a_module_without_its_circuit(tmp_path, capsys):
    model = _trained()
    path = tmp_path / "bare.pccm"
    write_artifact(path, model.current_plan(), None, backend="torch", dtype="float64",
                   pipeline=None, options={})
    data = tmp_path / "x.npy"
    np.save(data, np.array([[0, 1, 3], [5, 0, 0]]))  # variable 0 has 3 values
    assert main(["eval", str(path), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "row 2, column 1: value 5 is outside 0..2" in err and "Traceback" not in err
