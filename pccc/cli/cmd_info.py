"""``pccc info FILE``: sizes and properties of a circuit file."""

from __future__ import annotations

import argparse
from typing import Any

from pccc.ir import counts, is_decomposable, is_normalized, is_smooth, verify
from pccc.ir.circuit import Circuit


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
    """The ``(label, value)`` rows that ``pccc info`` prints."""
    k = counts(circuit)
    return [
        ("variables", circuit.num_vars),
        ("node vectors", k.vectors),
        ("nodes", f"{k.nodes} (input {k.input_nodes}, sum {k.sum_nodes}, "
                  f"product {k.product_nodes})"),
        ("edges", f"{k.edges} (sum {k.sum_edges}, product {k.product_edges})"),
        ("parameters", k.params),
        ("depth", k.depth),
        ("smooth", _yes(is_smooth(circuit))),
        ("decomposable", _yes(is_decomposable(circuit))),
        ("normalized", _yes(is_normalized(circuit))),
    ]


def print_summary(circuit: Circuit) -> None:
    """Print :func:`summary` as aligned ``label: value`` lines."""
    for label, value in summary(circuit):
        print(f"{label + ':':<14}{value}")


def _module_info(path: str, check: bool) -> None:
    """A compiled module: how it was made, its kernel plan, then its source circuit."""
    from pccc.artifact import read_artifact
    from pccc.ir.plan_verify import verify_plan

    manifest, plan, source = read_artifact(path)
    if check:
        verify_plan(plan)
    print(f"{'file:':<14}{path} (compiled module)")
    for key in ("pccc_version", "backend", "dtype", "pipeline"):
        if key in manifest:
            print(f"{key.replace('_', ' ') + ':':<14}{manifest[key]}")
    print(plan.summary())
    if source is not None:
        print("source circuit:")
        if check:
            verify(source)
        print_summary(source)


def run(args: argparse.Namespace) -> int:
    if str(args.file).lower().endswith(".pccm"):
        _module_info(args.file, not args.no_verify)
        return 0
    circuit = load_verified(args.file, check=not args.no_verify)
    print(f"{'file:':<14}{args.file}")
    print_summary(circuit)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="print sizes and properties of a circuit",
                       description="Print variables, nodes, edges, parameters, depth and "
                                   "whether the circuit is smooth, decomposable, normalized.")
    p.add_argument("file", help="circuit file (.pcir, .jpc, .psdd, .spn, ...) or compiled "
                                "module (.pccm)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the verifier (smooth/decomposable are still reported)")
    p.set_defaults(func=run)
