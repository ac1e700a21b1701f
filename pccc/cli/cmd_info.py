"""``pccc info FILE``: the summary of an IR file of any level, or of a compiled module."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pccc.ir import is_decomposable, is_normalized, is_smooth, verify
from pccc.ir.circuit import Circuit
from pccc.ir.summary import BATCH, circuit_rows, rows_text, summary_lines


def load_verified(path: str, *, check: bool = True) -> Circuit:
    """Read a circuit file (format by extension) and verify it (raises on a broken one)."""
    from pccc import formats

    circuit = formats.load(path)
    if check:
        verify(circuit)
    return circuit


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def summary(circuit: Circuit) -> list[tuple[str, Any]]:
    """The ``(label, value)`` rows that ``pccc info`` prints for an L0 circuit: its sizes
    (:func:`pccc.ir.summary.circuit_rows`) and whether it is smooth, decomposable and
    normalized."""
    return circuit_rows(circuit) + [
        ("smooth", _yes(is_smooth(circuit))),
        ("decomposable", _yes(is_decomposable(circuit))),
        ("normalized", _yes(is_normalized(circuit))),
    ]


def print_summary(circuit: Circuit) -> None:
    """Print :func:`summary` as aligned ``label: value`` lines."""
    print("\n".join(rows_text(summary(circuit))))


def verify_level(value: Any) -> None:
    """The verifier of the value's level; for a plan its structure (indices, reads and
    writes, roots), not its values, which ``pccc eval`` and ``pccc.load_module`` check."""
    if value.level == "L3":
        from pccc.ir.plan_verify import verify_plan

        verify_plan(value, values=False, groups=False)
        return
    from pccc.passes.manager import verify_any

    verify_any(value)


def _module_info(path: str) -> None:
    """A compiled module: how it was made, its kernel plan, then its source circuit (all
    checked as they are read)."""
    from pccc.artifact import read_artifact

    manifest, plan, source = read_artifact(path)
    print(f"{'file:':<14}{path} (compiled module)")
    for key in ("pccc_version", "backend", "dtype", "pipeline"):
        if key in manifest:
            print(f"{key.replace('_', ' ') + ':':<14}{manifest[key]}")
    print("\n".join(summary_lines(plan)))
    if source is not None:
        print("source circuit:")
        print_summary(source)


def run(args: argparse.Namespace) -> int:
    from pccc.api import load

    if str(args.file).lower().endswith(".pccm"):
        _module_info(args.file)
        return 0
    if str(args.file).lower().endswith(".pcir") and Path(args.file).is_file():
        from pccc.ir.parse_lowered import read_pcir_any

        # (a plan's sidecar arrays are viewed in place: read only where the summary looks)
        value = read_pcir_any(args.file, map_arrays=True)
    else:
        value = load(args.file)
    if not args.no_verify:
        verify_level(value)
    print(f"{'file:':<14}{args.file}")
    if value.level == "L0":
        print("\n".join(rows_text([("level", "L0 circuit")] + summary(value))))
    else:
        print("\n".join(summary_lines(value, args.batch)))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="print a summary of a circuit, a lowered IR file or a "
                                    "compiled module",
                       description="Print the sizes of the IR in FILE, whatever its level: "
                                   "variables, nodes, edges, parameters and depth, and whether "
                                   "a circuit is smooth, decomposable, normalized; tile shapes "
                                   "(L1); layers and partitions with their padding (L2, L3); "
                                   "buffers and parameter bytes (L3); kernel launches with "
                                   "predicted FLOPs and bytes (L4). The IR is verified first "
                                   "(a plan's structure).")
    p.add_argument("file", help="circuit file (.pcir of any level, .jpc, .psdd, .spn, ...) or "
                                "compiled module (.pccm)")
    p.add_argument("--batch", type=int, default=BATCH,
                   help=f"examples per pass in an L4 schedule's predicted FLOPs and bytes "
                        f"(default {BATCH})")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the verifier (smooth/decomposable are still reported; a .pccm "
                        "is always checked)")
    p.set_defaults(func=run)
