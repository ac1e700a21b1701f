"""The L3 text: sections with their counts, long arrays wrapped at 100 characters with index
ranges in the margins, read back exactly; a margin that does not fit is a located error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pccc.ir import ParseError
from pccc.ir.lexer import TokenStream
from pccc.ir.parse_plan import PlanParser
from pccc.ir.print_plan import array_lines


def _read(lines: list[str], name: str = "x") -> np.ndarray:
    ts = TokenStream("\n".join(lines) + "\n", "t.pcir")
    return PlanParser(ts, base_dir=None, allow_elided=False).array(name)  # type: ignore[arg-type]


_ints = hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=16),
                   elements=st.integers(-(2**40), 2**40))
_floats = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=60),
                     elements=st.floats(allow_nan=True, allow_infinity=True))


@given(a=st.one_of(_ints, _floats), indent=st.sampled_from(["", "  ", "    "]))
def test_wrapped_arrays_read_back_exactly_within_100_characters(a, indent):
    dt = "f64" if a.dtype.kind == "f" else "i64"
    lines = array_lines(f"{indent}x {dt}[{', '.join(map(str, a.shape))}] = ", a, indent)
    assert all(len(line) <= 100 for line in lines) or len(lines) == 1 and a.size == 0
    back = _read(lines)
    assert back.shape == a.shape
    np.testing.assert_array_equal(back, a)
    seen = ~np.isnan(a)  # (-0.0 keeps its sign; a NaN's sign is not printed)
    assert np.array_equal(np.signbit(back)[seen], np.signbit(a)[seen])


def test_rows_too_long_for_a_line_are_cut_along_the_next_axis():
    a = np.arange(3 * 70).reshape(3, 70) * 1000
    lines = array_lines("x i64[3, 70] = ", a, "")
    assert lines[0] == "x i64[3, 70] ="
    assert lines[1].strip().startswith("0, 0:")
    assert lines[-1].split("|")[0].strip().startswith("2, ")
    np.testing.assert_array_equal(_read(lines), a)


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ls[:1] + ls[2:], r"2:3: this line starts at \(10,\), the array goes on at \(0,\)"),
    (lambda ls: ls[:1] + [ls[1].replace("0:10", "0:11")] + ls[2:], "',' between items"),
    (lambda ls: ls[:1] + [ls[1].replace("0:10", "0:99")] + ls[2:], "index range outside"),
    (lambda ls: ls[:1] + [ls[1].replace(" | ", " ")] + ls[2:], "'|' after the index range"),
    (lambda ls: ls[:-1], "6:1: expected an index range"),
])
def test_bad_margins_are_located(edit, message):
    lines = array_lines("x i64[40] = ", np.arange(40) * 1_000_000, "")
    assert lines[1].startswith("   0:10 | ")
    with pytest.raises(ParseError, match=message):
        _read(edit(lines))


def test_mapped_sidecars_give_the_same_plan(tmp_path):
    from pccc.ir import CircuitBuilder
    from pccc.ir.parse_lowered import read_pcir_any
    from pccc.ir.print_lowered import write_pcir_any
    from pccc.passes import run_pipeline

    b = CircuitBuilder(rng=0)
    x = [b.sum([b.input(v, "categorical", n=8, card=5)], n=8) for v in range(3)]
    plan = run_pipeline(b.build(b.sum([b.product(x)], n=1)), "default")
    write_pcir_any(plan, tmp_path / "p.pcir", inline_below=0)
    mapped = read_pcir_any(tmp_path / "p.pcir", map_arrays=True)
    assert mapped == plan == read_pcir_any(tmp_path / "p.pcir")
    assert not mapped.params.flags.writeable and not mapped.params.flags.owndata
    with np.load(tmp_path / "p.npz") as z:  # compressed members are read, not mapped
        np.savez_compressed(tmp_path / "p.npz", **dict(z))
    assert read_pcir_any(tmp_path / "p.pcir", map_arrays=True) == plan


def test_every_line_of_a_wide_plan_fits_and_reads_back():
    from pccc.ir import CircuitBuilder, parse, to_text
    from pccc.passes import run_pipeline

    b = CircuitBuilder(rng=1)
    x = [b.sum([b.input(v, "bernoulli", n=2)], n=2) for v in range(60)]
    plan = run_pipeline(b.build(b.sum([b.product(x)], n=1)), "default")
    text = to_text(plan)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.count("input_keys [") == 1 and parse(text) == plan
