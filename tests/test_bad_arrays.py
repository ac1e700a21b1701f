"""Sidecars and ``.npy``/``.npz`` data that are empty, truncated, corrupt, of object dtype or of
another shape than they claim: located errors, never a traceback, never pickle."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from pccc.cli.main import main
from pccc.data import load_data
from pccc.ir import CircuitBuilder, DataError, ParseError, parse
from pccc.ir.npzio import NpzReader

L0 = """pcir 1 L0
circuit num_vars=1
%0 = input bernoulli n=1 param=@p var=0
%1 = sum(%0) n=1 param=@w
param @p f64[1] = npz "SIDE"
param @w f64[1, 1] = [[1.0]]
"""


def _object_npz(path):
    buf = io.BytesIO()
    np.save(buf, np.array([[{"x": 1}]], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("p.npy", buf.getvalue())


def _bad_crc_npz(path):
    np.savez(path, p=np.array([0.25]))
    blob = bytearray(path.read_bytes())
    at = blob.find(b"\x00\x00\x00\x00\x00\x00\xd0\x3f")  # the bytes of 0.25
    blob[at + 7] ^= 0x01
    path.write_bytes(bytes(blob))


def _truncated_npz(path):
    np.savez(path, p=np.array([0.25]))
    path.write_bytes(path.read_bytes()[:-30])


def _huge_header_npz(path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": (10**12,)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("p.npy", buf.getvalue() + b"\x00" * 8)


def _wrong_shape_npz(path):
    np.savez(path, p=np.array([0.25, 0.5]))


BREAKERS = {"dev-null": None, "object": _object_npz, "bad-crc": _bad_crc_npz,
            "truncated": _truncated_npz, "huge-header": _huge_header_npz,
            "wrong-shape": _wrong_shape_npz, "folder": "folder", "missing": "missing"}


def _sidecar(tmp_path, how) -> str:
    if how is None:
        os.symlink(os.devnull, tmp_path / "s.npz")
    elif how == "folder":
        (tmp_path / "s.npz").mkdir()
    elif how != "missing":
        how(tmp_path / "s.npz")
    return "s.npz"


@pytest.mark.parametrize("how", BREAKERS.values(), ids=BREAKERS.keys())
def test_broken_sidecars_are_located(tmp_path, how):
    text = L0.replace("SIDE", _sidecar(tmp_path, how))
    with pytest.raises(ParseError) as e:
        parse(text, file=str(tmp_path / "c.pcir"))
    assert (e.value.line, e.value.col) == (5, 23), str(e.value)
    assert "sidecar" in str(e.value)


PLAN_TAIL = 'params f64[1] = npz "SIDE" "p"\n'


@pytest.mark.parametrize("how", BREAKERS.values(), ids=BREAKERS.keys())
def test_broken_plan_sidecars_are_located(tmp_path, how):
    from pccc.ir.lexer import TokenStream
    from pccc.ir.parse_plan import PlanParser

    ts = TokenStream(PLAN_TAIL.replace("SIDE", _sidecar(tmp_path, how)), str(tmp_path / "p"))
    with pytest.raises(ParseError) as e:
        PlanParser(ts, tmp_path, False).array("params")
    assert (e.value.line, e.value.col) == (1, 21), str(e.value)


def _data_circuit():
    b = CircuitBuilder()
    return b.build(b.sum([b.product([b.input(0, "bernoulli"), b.input(1, "bernoulli")])]))


@pytest.mark.parametrize("how", BREAKERS.values(), ids=BREAKERS.keys())
def test_broken_npz_data_is_a_data_error(tmp_path, capsys, how):
    _sidecar(tmp_path, how)
    with pytest.raises(DataError, match=r"s.npz: "):
        load_data(tmp_path / "s.npz", _data_circuit(), key="p")
    (tmp_path / "c.pcir").write_text(
        "pcir 1 L0\ncircuit num_vars=1\n%0 = input indicator card=2 n=1 values=[0] var=0\n")
    assert main(["eval", str(tmp_path / "c.pcir"), "--data", str(tmp_path / "s.npz")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_object_and_string_npy_data_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "s.npy", np.array([["1", "0"]]))
    for name in ("o.npy", "s.npy"):
        with pytest.raises(DataError, match=rf"{name}: cannot read as .npy: arrays of"):
            load_data(tmp_path / name, _data_circuit())


def test_a_sidecar_is_opened_once(tmp_path, monkeypatch):
    arrays = {f"k{i}": np.full((1, 1), float(i)) for i in range(40)}
    np.savez(tmp_path / "s.npz", **arrays)
    opened = []
    real = NpzReader.__init__

    def count(self, path):
        opened.append(path)
        real(self, path)

    monkeypatch.setattr(NpzReader, "__init__", count)
    lines = ["pcir 1 L0", "circuit num_vars=1",
             "%0 = input indicator card=2 n=1 values=[0] var=0",
             "%1 = sum(" + ", ".join(["%0"] * 40) + ") n=1 param=@w"]
    from pccc.ir.parser import parse_circuit

    text = "\n".join(lines) + '\nparam @w f64[1, 40] = [[' + ", ".join(["0.025"] * 40) + "]]\n"
    parse_circuit(text)  # (no sidecar: a smoke check of the text)
    plan_lines = "".join(f'x{i} f64[1, 1] = npz "s.npz" "k{i}"\n' for i in range(40))
    from pccc.ir.lexer import TokenStream
    from pccc.ir.parse_plan import PlanParser

    pp = PlanParser(TokenStream(plan_lines, "p.pcir"), tmp_path, False)
    got = [pp.array(f"x{i}") for i in range(40)]
    assert [float(a[0, 0]) for a in got] == list(range(40))
    assert len(opened) == 1
