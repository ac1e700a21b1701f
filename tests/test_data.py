"""Data loading: every format and spelling gives the same array; errors name row and column."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pccc.data import load_data
from pccc.ir import CircuitBuilder, DataError


def _write_text(path, x, missing="?", sep=",", pad=""):
    rows = [sep.join(missing if v == -1 else f"{pad}{v}{pad}" for v in row) for row in x]
    data = ("\n".join(rows) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


matrices = hnp.arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 6)),
                      elements=st.integers(-1, 120))


@settings(max_examples=40)
@given(x=matrices, style=st.sampled_from([
    ("a.csv", "?", ""), ("a.data", "", ""), ("a.txt", "?", " "), ("a.data.gz", "", ""),
    ("a.csv", "-1", ""), ("a.csv", " ? ", "")]))
def test_text_spellings_agree(tmp_path_factory, x, style):
    name, missing, pad = style
    # one column with missing spelled as an empty field writes a blank line, and blank lines
    # are skipped (pccc.data's format): such a file cannot hold that row
    assume(not (missing == "" and x.shape[1] == 1 and (x == -1).any()))
    path = tmp_path_factory.mktemp("d") / name
    _write_text(path, x, missing=missing, pad=pad)
    got = load_data(path)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, x)


@given(x=matrices)
def test_binary_arrays(tmp_path_factory, x):
    d = tmp_path_factory.mktemp("b")
    np.save(d / "a.npy", x)
    np.savez(d / "a.npz", first=x, second=x + 1)
    np.testing.assert_array_equal(load_data(d / "a.npy"), x)
    np.testing.assert_array_equal(load_data(d / "a.npz"), x)
    np.testing.assert_array_equal(load_data(d / "a.npz", key="second"), x + 1)


def test_one_character_grid_with_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"0,1,?\r\n\r\n1,0,1\r\n")
    np.testing.assert_array_equal(load_data(p), [[0, 1, -1], [1, 0, 1]])


def test_floats_and_nan(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("0.5,?\n1e3,-2.25\n")
    got = load_data(p)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[0.5, np.nan], [1000.0, -2.25]])


def _circuit():
    b = CircuitBuilder()
    a = b.input(0, "categorical", card=3)
    c = b.input(1, "bernoulli")
    d = b.input(2, "binomial", total=4)
    return b.build(b.sum([b.product([a, c, d])]))


@pytest.mark.parametrize("text, pattern", [
    ("0,1,4\n2,1\n", r"x.csv: row 2 \(line 2\) \(counting from 1\): 2 columns, but row 1 has 3"),
    ("0,1,4\n\n2,1,5\n",
     r"x.csv: row 2 \(line 3\), column 3 \(counting from 1\): value 5 is outside the domain "
     r"0..4 of variable 2"),
    ("0,1,4\n3,1,2\n", r"row 2 \(line 2\), column 1 .*value 3 is outside the domain 0..2"),
    ("0,1.5,4\n", r"row 1 \(line 1\), column 2 .*value 1.5 is outside"),
    ("0,-2,4\n", r"row 1 \(line 1\), column 2 .*value -2 is outside"),
    ("0,1,x\n", r"row 1 \(line 1\), column 3 \(counting from 1\): not a number: 'x'"),
    ("0,1\n1,1\n", r"x.csv: row 1 \(line 1\) \(counting from 1\): 2 columns, but the circuit "
                   r"has 3 variables"),
    ("\n\n", r"x.csv: no data rows"),
])
def test_bad_text_is_located(tmp_path, text, pattern):
    p = tmp_path / "x.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=pattern):
        load_data(p, _circuit())


def test_array_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[0, 1, 4], [0, 1, 9]]))
    with pytest.raises(DataError, match=r"row 2, column 3 \(counting from 1\): value 9"):
        load_data(tmp_path / "x.npy", _circuit())
    np.save(tmp_path / "y.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"expected a 2-D array"):
        load_data(tmp_path / "y.npy")
    (tmp_path / "z.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"z.npy: cannot read"):
        load_data(tmp_path / "z.npy")
    with pytest.raises(DataError, match=r"unknown data format"):
        load_data(tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"no array 'nope'"):
        np.savez(tmp_path / "w.npz", a=np.zeros((1, 3)))
        load_data(tmp_path / "w.npz", key="nope")


def test_valid_data_against_circuit(tmp_path):
    p = tmp_path / "ok.data"
    p.write_text("0,1,4\n?,,0\n2,0,?\n")
    np.testing.assert_array_equal(load_data(p, _circuit()), [[0, 1, 4], [-1, -1, 0], [2, 0, -1]])


def test_large_text_file_is_fast(tmp_path):
    import time

    rng = np.random.default_rng(0)
    x = rng.integers(-1, 2, size=(100_000, 20))
    p = tmp_path / "big.data"
    _write_text(p, x)
    t = time.perf_counter()
    got = load_data(p)
    elapsed = time.perf_counter() - t
    np.testing.assert_array_equal(got, x)
    assert elapsed < 10.0  # a Python loop per value takes far longer on 2M values


@pytest.mark.parametrize("text", ["?,\n", ",\n?,?\n", "?\n?\n"])
def test_rows_with_no_digit_at_all_are_all_missing(tmp_path, text):
    path = tmp_path / "m.csv"
    path.write_text(text)
    x = load_data(path)
    rows = [ln.split(",") for ln in text.strip().split("\n")]
    assert x.shape == (len(rows), len(rows[0]))
    assert (x == -1).all()
