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
