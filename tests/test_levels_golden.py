"""Golden texts of every level: ``tests/golden/levels/<case>/L0.pcir`` lowered by the passes
below must print exactly as ``L1.pcir``, ``L2.pcir`` and ``L3.pcir`` (L1 and L2 naming
``L0.pcir`` as their source), and each expected file must read back to the value.
``PCCC_UPDATE_GOLDEN=1 pytest tests/test_levels_golden.py`` rewrites them for review."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pccc.ir.parse_lowered import read_pcir_any
from pccc.ir.print_lowered import SourceRef
from pccc.ir.printer import to_text
from pccc.passes import run_pipeline

GOLDEN = Path(__file__).parent / "golden" / "levels"
CASES = sorted(p for p in GOLDEN.iterdir() if p.is_dir())
STAGES = ["group-blocks{block-size=4,min-block=2,tolerance=0.5}", "partition-layers",
          "layout-params"]


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_every_level_prints_as_expected(case: Path) -> None:
    ir = read_pcir_any(case / "L0.pcir")
    for k, stage in enumerate(STAGES, 1):
        ir = run_pipeline(ir, stage)
        got = to_text(ir, source=SourceRef("L0.pcir")) if k < 3 else to_text(ir)
        expected = case / f"L{k}.pcir"
        if os.environ.get("PCCC_UPDATE_GOLDEN"):
            expected.write_text(got)
        assert got == expected.read_text(), expected
        assert read_pcir_any(expected) == ir
        assert max(len(line) for line in got.splitlines() if "sha256" not in line) <= 100
