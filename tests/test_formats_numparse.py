"""The whole-array number parsers of the vectorized readers agree with int() and float()."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pccc.formats import _numparse


def _layout(tokens: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    text = (" ".join(tokens) + "\n").encode()
    start, pos = [], 0
    for t in tokens:
        start.append(pos)
        pos += len(t) + 1
    s = np.array(start, dtype=np.int64)
    return np.frombuffer(text, np.uint8), s, s + np.array([len(t) for t in tokens])


def test_ints_match_int() -> None:
    rng = random.Random(1)
    toks = []
    for _ in range(50_000):
        n = rng.randint(1, 15)
        v = rng.randrange(10 ** (n - 1) if n > 1 else 0, 10**n)
        toks.append(str(v) if rng.random() < 0.7 else f"-{v}")
    toks += ["0", "-0", "007", "00000000012", "123456789012345", "999999999999999", "-99999999"]
    b, s, e = _layout(toks)
    assert _numparse.ints(b, s, e).tolist() == [int(t) for t in toks]


@pytest.mark.parametrize("bad", ["12a", "1-2", "+5", "-", "1.5", "1234567890123456", "12345:78"])
def test_ints_reject(bad: str) -> None:
    b, s, e = _layout(["1", bad, "2"])
    with pytest.raises(ValueError):
        _numparse.ints(b, s, e)


def test_floats_match_float() -> None:
    rng = np.random.default_rng(0)
    vals = np.concatenate([np.log(rng.random(20_000)), rng.standard_normal(20_000) * 1e-7,
                           rng.standard_normal(5_000) * 1e200])
    toks = [repr(x) for x in vals.tolist()]
    toks += ["1e-05", "-0.0", "1.5E+300", "2.", ".5", "-3", "0.1000000000000000055511151231257827"]
    b, s, e = _layout(toks)
    got = _numparse.floats(b, s, e)
    want = [float(t) for t in toks]
    assert got.tolist() == want
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_floats_reject() -> None:
    b, s, e = _layout(["1.5", "1.2.3", "2.5"])
    with pytest.raises(ValueError):
        _numparse.floats(b, s, e)


def _bench_text(n: int) -> bytes:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "bench_parse.py"
    spec = importlib.util.spec_from_file_location("bench_parse", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(3)
    lits = "\n".join(f"L {i} 0 {(i // 2 + 1) * (1 if i % 2 == 0 else -1)}" for i in range(n // 10))
    return f"c x\njpc {n}\n{lits}\n{mod._block(rng, n // 10, n, n)}\n".encode()


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 22])
def test_chunked_fast_reader_matches_line_reader(monkeypatch: pytest.MonkeyPatch,
                                                 chunk: int) -> None:
    from pccc.formats import _fastjpc
    from pccc.formats.jpc import parse_lines

    text = _bench_text(3000)
    monkeypatch.setattr(_fastjpc, "_CHUNK", chunk)
    fast = _fastjpc.parse(text)
    assert fast is not None
    assert fast == parse_lines(text, "b.jpc")
    # a bad integer deep in the file: the fast path declines, whatever the chunking
    at = text.index(b"\nP ", len(text) * 3 // 4)
    at = text.index(b" 2 ", at) + 3  # the first child id of that product
    bad = text[:at] + b"-" + text[at:]
    assert _fastjpc.parse(bad) is None


def _decimal_cases(rng: np.random.Generator, n: int) -> list[str]:
    """Random plain decimals (1 to 19 digits, dot anywhere, signs) and decimals that lie
    just at, or next to, the halfway point between two neighbouring doubles."""
    import decimal

    r = random.Random(7)
    out = []
    for _ in range(n):
        ds = "".join(r.choice("0123456789") for _ in range(r.randint(1, 19)))
        k = r.randint(0, len(ds))
        t = f"{ds[:k]}.{ds[k:]}" if r.random() < 0.9 else ds
        out.append(("-" if r.random() < 0.5 else "") + t)
    for x in rng.random(n).tolist():
        mid = (decimal.Decimal(x) + decimal.Decimal(float(np.nextafter(x, 2.0)))) / 2
        text = format(mid, "f")
        out += [text[:21], text[:19], text[:18]]
    return out


@pytest.mark.parametrize("extended", [True, False])
def test_floats_exact_near_halfway(monkeypatch: pytest.MonkeyPatch, extended: bool) -> None:
    if extended and not _numparse._EXTENDED:
        pytest.skip("no extended long double here")
    monkeypatch.setattr(_numparse, "_EXTENDED", extended)
    toks = _decimal_cases(np.random.default_rng(1), 20_000)
    b, s, e = _layout(toks)
    got = _numparse.floats(b, s, e)
    want = [float(t) for t in toks]
    assert got.tolist() == want
    assert np.array_equal(np.signbit(got), np.signbit(want))


def _dots(toks: list[str], start: np.ndarray) -> np.ndarray:
    """What the tokenizer hands to ``floats``: the '.' of each plain decimal, else -1."""
    import re

    return np.array([s + t.index(".") if re.fullmatch(r"-?[0-9]*\.[0-9]*", t) else -1
                     for t, s in zip(toks, start.tolist())], dtype=np.int64)


@pytest.mark.parametrize("x87", [True, False])
def test_floats_at_known_dots_exact(monkeypatch: pytest.MonkeyPatch, x87: bool) -> None:
    """The tokenizer's path (digits read in place around a known '.'), with the x87 bit test
    for halfway cases and with the portable one."""
    if not _numparse._EXTENDED or (x87 and not _numparse._X87):
        pytest.skip("no extended long double here")
    monkeypatch.setattr(_numparse, "_X87", x87)
    rng = np.random.default_rng(2)
    toks = _decimal_cases(rng, 20_000)
    toks += [repr(x) for x in np.log(rng.random(20_000)).tolist()]
    toks += ["2.", ".5", "-.5", "-3.", "0.0", "-0.0", "123456789.5", "12345678.5", "1e-05",
             "0.1000000000000000055511151231257827", "9999999999999999999.", ".9999999999999999999"]
    b, s, e = _layout(toks)
    dot = _dots(toks, s)
    got = _numparse.floats(b, s, e, dot)
    want = [float(t) for t in toks]
    assert got.tolist() == want
    assert np.array_equal(np.signbit(got), np.signbit(want))
    done = _numparse._plain(b, s, e, dot, np.empty(len(toks)))
    assert done.sum() > len(toks) // 2  # most take the fast path


def test_ints_unchecked_match_int() -> None:
    """``check=False`` (the tokenizer has checked the bytes): 0 to 15 digits, signs."""
    rng = random.Random(3)
    toks = [str(rng.randrange(10 ** rng.randint(0, 15))) for _ in range(20_000)]
    toks = [t if rng.random() < 0.7 else "-" + t for t in toks] + ["0", "-0", "007"]
    b, s, e = _layout(toks)
    assert _numparse.ints(b, s, e, check=False).tolist() == [int(t) for t in toks]
    for _ in range(3):  # _digits: any length 0 to 19
        ds = ["".join(rng.choice("0123456789") for _ in range(rng.randint(0, 19)))
              for _ in range(2000)]
        b, s, e = _layout(ds)
        got = _numparse._digits(_numparse._words(b), e, e - s)
        assert got.tolist() == [int(d) if d else 0 for d in ds]


def test_reader_leaves_the_collector_as_it_found_it() -> None:
    """The fast reader pauses the collector and moves what it built to the oldest generation;
    it never unfreezes objects that the program froze."""
    import gc

    from pccc.formats import _fastjpc

    text = b"jpc 3\nL 0 0 1\nL 1 0 -1\nS 2 0 2 0 -0.5 1 -1.0\n"
    assert gc.isenabled()
    assert _fastjpc.parse(text) is not None
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert _fastjpc.parse(text) is not None
        # nothing unfrozen (that would empty the permanent generation) and nothing added; a
        # frozen object that dies meanwhile (another thread's) only lowers the count
        assert 0 < gc.get_freeze_count() <= frozen and gc.isenabled()
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        assert _fastjpc.parse(text) is not None
        assert not gc.isenabled()
    finally:
        gc.enable()
