"""Mutation campaigns over real circuit and data files, as a careless or hostile user would
make them: the zoo's PSDDs, ``.jpc`` files written by ``pccc convert``, ``.pcir`` and ``.spn``
text, and data files, mutated byte by byte, line by line and number by number.

Every mutant goes through ``pccc info`` and ``pccc eval`` in process: each ends with status 0,
or with status 2 and one or two lines naming the place, nothing written and never a traceback,
within a time limit (no hang). What is accepted evaluates to numbers or ``-inf``, never NaN,
and (``thorough`` profile) the torch backend in float64 gives the reference's values. Lost
lines, the classic silent misread, are refused in every format. The ``ci`` hypothesis profile
runs a few dozen mutants; ``HYPOTHESIS_PROFILE=thorough`` runs a thousand, over larger files.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pccc.formats as formats
from pccc.cli.main import main
from pccc.data import load_data
from pccc.ir import CircuitBuilder, DataError, parse, to_text

PSDDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "circuits" / "psdds"
THOROUGH = settings.default.max_examples >= 1000
#: seconds one command may take on a mutant before it counts as a hang
LIMIT = 60
#: numbers a hostile edit puts in place of one
HOSTILE = ["1000000000", "-1", "0", "99999999999999999999", "1e308", "-1e308", "nan", "inf",
           "1_0", "\u0663", "-0", "+1", "0.5", "-?", "?", "4294967296", "18446744073709551615"]


def _spn_of(c) -> bytes:
    """``.spn`` text of a scalar circuit of indicators, products and sums (a test writer)."""
    doms = [2] * c.num_vars
    lines = [f"({' '.join(map(str, doms))})"]
    for nd in c.nodes:
        if nd.kind == "input":
            lines.append(f"v {nd.var} {nd.attr_dict()['values'][0]}")
        elif nd.kind == "product":
            lines.append("* " + " ".join(map(str, nd.children)))
        else:
            w = np.log(c.params[nd.param][0])
            lines.append("+ " + " ".join(f"{ch} {lw!r}" for ch, lw in zip(nd.children, w)))
    return ("\n".join(lines) + "\nEOF\n").encode()


def _pcir_seed() -> bytes:
    b = CircuitBuilder(rng=3)
    x = [b.input(0, "categorical", card=3, n=2), b.input(1, "bernoulli", n=2),
         b.input(2, "binomial", total=2, n=2)]
    y = [b.input(0, "indicator", card=3, values=[0, 2], n=2), b.input(1, "bernoulli", n=2),
         b.input(2, "categorical", card=3, n=2)]
    s = b.sum([b.product(x), b.product(y)], n=2)
    return to_text(b.build(b.sum([s], n=1))).encode()


def _seeds() -> dict[str, bytes]:
    out = {"mix.pcir": _pcir_seed()}
    if PSDDS.is_dir():
        little = formats.load(PSDDS / "little_4var.psdd")
        out["little.psdd"] = (PSDDS / "little_4var.psdd").read_bytes()
        out["little.spn"] = _spn_of(little)
        buf = io.BytesIO()
        formats.jpc.write(little, buf)  # (what pccc convert writes)
        out["little.jpc"] = buf.getvalue()
        if THOROUGH:
            nl = gzip.decompress((PSDDS / "nltcs.psdd.gz").read_bytes())
            out["nltcs.psdd"] = nl
            c = formats.load(PSDDS / "nltcs.psdd.gz")
            buf = io.BytesIO()
            formats.jpc.write(c, buf)
            out["nltcs.jpc"] = buf.getvalue()
    return out


SEEDS = _seeds()
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@st.composite
def mutants(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    base = SEEDS[name]
    op = draw(st.sampled_from(["number", "number", "flip", "insert", "delete", "cut", "line"]))
    if op == "number":
        spans = [m.span() for m in _NUMBER.finditer(base)]
        i, j = spans[draw(st.integers(0, len(spans) - 1))]
        return name, base[:i] + draw(st.sampled_from(HOSTILE)).encode() + base[j:]
    k = draw(st.integers(0, max(len(base) - 1, 0)))
    if op == "flip":
        return name, base[:k] + draw(st.binary(min_size=1, max_size=3)) + base[k + 1:]
    if op == "insert":
        piece = draw(st.sampled_from([b" ", b"\n", b"-", b"[", b"]", b"%", b"@", b"e", b"c "]))
        return name, base[:k] + piece + base[k:]
    if op == "delete":
        return name, base[:k] + base[k + draw(st.integers(1, 30)):]
    if op == "cut":
        return name, base[:k]
    lines = base.split(b"\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["dup", "swap", "drop"]))
    if how == "dup":
        lines.insert(i, lines[j])
    elif how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        del lines[i]
    return name, b"\n".join(lines)


@contextlib.contextmanager
def _time_limit(seconds: int):
    def hang(*_):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(args: list[str]) -> tuple[int, str, str]:
    """``pccc ARGS`` in process: (status, stdout, stderr); a numpy or Python warning, which
    would reach the user's terminal, fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with _time_limit(LIMIT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(args)
    leaked = [w for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))]
    assert not leaked, (args, [str(w.message) for w in leaked])
    return rc, out.getvalue(), err.getvalue()


def _user_error_or_success(rc: int, err: str, path: Path) -> None:
    assert rc in (0, 2), (rc, err)
    assert "Traceback" not in err
    if rc == 2:
        lines = err.strip().splitlines()
        assert 1 <= len(lines) <= 2 and lines[0].startswith("pccc: error: "), err


def _data_for(folder: Path, seed: str) -> Path:
    num_vars = 3 if seed.endswith(".pcir") else (16 if seed.startswith("nltcs") else 4)
    x = np.random.default_rng(0).integers(-1, 2, size=(6, num_vars))
    p = folder / "x.csv"
    p.write_text("\n".join(",".join("?" if v < 0 else str(v) for v in r) for r in x) + "\n")
    return p


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutants())
def test_mutated_circuit_files(tmp_path_factory, case):
    name, blob = case
    d = tmp_path_factory.mktemp("m")
    path = d / name
    path.write_bytes(blob)
    data = _data_for(d, name)
    rc, _, err = _run(["info", str(path)])
    _user_error_or_success(rc, err, path)
    backends = ["reference", "torch"] if THOROUGH else ["reference"]
    results = []
    for backend in backends:
        out = d / f"ll_{backend}.npy"
        rc, stdout, err = _run(["eval", str(path), "--data", str(data), "--backend", backend,
                                "--out", str(out)])
        _user_error_or_success(rc, err, path)
        if rc == 2:
            assert not out.exists()
            continue
        ll = np.load(out)
        assert not np.isnan(ll).any(), (stdout, ll)
        results.append(ll)
    if len(results) == 2:
        np.testing.assert_allclose(results[1], results[0], rtol=1e-9, atol=1e-9)
    converted = d / "out.jpc"
    rc, _, err = _run(["convert", str(path), str(converted)])
    _user_error_or_success(rc, err, path)
    assert (rc == 0) == converted.exists()


def _line_cuts(blob: bytes, most: int) -> list[bytes]:
    """The file without its last 1 .. ``most`` lines."""
    lines = blob.rstrip(b"\n").split(b"\n")
    return [b"\n".join(lines[:-k]) + b"\n" for k in range(1, most + 1) if len(lines) > k + 1]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_lost_lines_are_refused_in_every_format(tmp_path, name):
    # (a .psdd that lost more than its root line can be a smaller valid PSDD: its sub-circuit
    # rooted at the new last line; the root's loss is always seen)
    for i, blob in enumerate(_line_cuts(SEEDS[name], 1 if name.endswith(".psdd") else 3)):
        path = tmp_path / f"{i}_{name}"
        path.write_bytes(blob)
        rc, _, err = _run(["info", str(path)])
        assert rc == 2 and "Traceback" not in err, (name, i, err)


def _zoo() -> list[str]:
    if not PSDDS.is_dir():
        return []
    names = sorted(p.name for p in PSDDS.glob("*.psdd*"))
    return names if THOROUGH else ["little_4var.psdd", "tretail.psdd.gz"]


@pytest.mark.parametrize("name", _zoo())
def test_every_zoo_psdd_that_lost_its_root_line_is_refused(tmp_path, name):
    data = (PSDDS / name).read_bytes()
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    lines = text.rstrip(b"\n").split(b"\n")
    path = tmp_path / "cut.psdd"
    path.write_bytes(b"\n".join(lines[:-1]) + b"\n")
    rc, _, err = _run(["info", str(path)])
    assert rc == 2 and "used by no later node" in err


CELLS = ["0", "1", "2", "?", "", " 1 ", "-1", "-2", "1.5", "1e9", "nan", "inf", "\u0661",
         "\uff11", "0_1", "1_0", "-?", "+1", "x", "3 4", "1e400", ".5", "1."]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(CELLS), min_size=3, max_size=3), min_size=1,
                max_size=4), st.sampled_from(["csv", "npy-int", "npy-float", "npy-uint"]))
def test_mutated_data_files(tmp_path_factory, rows, kind):
    d = tmp_path_factory.mktemp("d")
    (d / "c.pcir").write_bytes(_pcir_seed())
    if kind == "csv":
        path = d / "x.csv"
        path.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    else:
        vals = [[_number(cell) for cell in r] for r in rows]
        path = d / "x.npy"
        if kind == "npy-int":
            arr = np.array([[int(v) if np.isfinite(v) and abs(v) < 2**62 else -1 for v in r]
                            for r in vals], dtype=np.int64)
        elif kind == "npy-uint":
            arr = np.array([[int(v) if np.isfinite(v) and 0 <= v < 2**63 else 2**64 - 1
                             for v in r] for r in vals], dtype=np.uint64)
        else:
            arr = np.array(vals, dtype=np.float64)
        np.save(path, arr)
    out = d / "ll.npy"
    rc, _, err = _run(["eval", str(d / "c.pcir"), "--data", str(path), "--backend",
                       "reference", "--out", str(out)])
    _user_error_or_success(rc, err, path)
    assert (rc == 0) == out.exists()
    if rc == 0:
        assert not np.isnan(np.load(out)).any()
        x = load_data(path, parse(_pcir_seed().decode()))
        assert ((x >= -1) & (x <= 2)).all()
    elif kind == "csv" and any(c in cell for r in rows for cell in r
                               for c in ("_", "\u0661", "\uff11", "-?", "+", "nan")):
        with pytest.raises(DataError):
            load_data(path)


def _number(cell: str) -> float:
    try:
        return float(cell) if cell.strip() not in ("", "?") else -1.0
    except ValueError:
        return -1.0
