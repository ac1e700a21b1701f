"""Golden tests: for every ``tests/golden/<pass>/<case>.in.pcir`` the pass's output, printed as
``.pcir`` text, must equal ``<case>.out.pcir`` exactly.

An input may start with ``// options: {name=value,...}``, the pass options of the case.
Arrays above 64 elements are printed elided (inputs may elide them too; they parse as uniform
values). An L1 or L2 output names its source circuit by digest and the input file instead of
copying it. ``PCCC_UPDATE_GOLDEN=1 pytest tests/test_passes_golden.py`` rewrites the expected
files for review (``git diff tests/golden``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pccc.backends.reference.lowered import evaluate_any
from pccc.ir.parse_lowered import parse_any
from pccc.ir.print_lowered import SourceRef
from pccc.ir.printer import to_text
from pccc.passes import run_pipeline

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*.in.pcir"))
ELIDE = 64


def _pipeline(path: Path, text: str) -> str:
    name = path.parent.name.replace("_", "-")
    m = re.match(r"\s*//\s*options:\s*(\{[^}]*\})", text)
    return name + (m.group(1) if m else "")


def _text(out, case: Path) -> str:
    """The output as printed: an L1 or L2 value names its source circuit, the input's."""
    if out.level in ("L1", "L2"):
        return to_text(out, elide_above=ELIDE, source=SourceRef(case.name))
    return to_text(out, elide_above=ELIDE)


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name[:-8]}" for p in CASES])
def test_golden(case: Path) -> None:
    text = case.read_text()
    ir = parse_any(text, file=str(case), allow_elided=True)
    out = run_pipeline(ir, _pipeline(case, text), verify=True)
    got = _text(out, case)
    expected = case.with_name(case.name.replace(".in.pcir", ".out.pcir"))
    if os.environ.get("PCCC_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert expected.exists(), f"{expected} missing: run with PCCC_UPDATE_GOLDEN=1 and review"
    assert got == expected.read_text()


def test_every_pass_has_golden_cases() -> None:
    from pccc.passes.registry import load_builtins

    load_builtins()
    for mod in ("canonicalize", "group_blocks", "partition_layers", "layout_params"):
        assert list((GOLDEN / mod).glob("*.in.pcir")), f"no golden case for {mod}"


def test_golden_outputs_compute_the_same_function() -> None:
    """The expected files are not just stable text: each computes what its input computes."""
    import numpy as np

    rng = np.random.default_rng(0)
    for case in CASES:
        text = case.read_text()
        if "elided" in text:
            continue
        before = parse_any(text, allow_elided=True)
        out = case.with_name(case.name.replace(".in.", ".out."))
        after = parse_any(out.read_text(), file=str(out), allow_elided=True)
        circuit = getattr(before, "circuit", before)
        x = rng.integers(0, 2, size=(8, circuit.num_vars))
        x[rng.random(x.shape) < 0.3] = -1
        np.testing.assert_allclose(evaluate_any(after, x), evaluate_any(before, x),
                                   rtol=1e-12, atol=1e-12, err_msg=str(case))
