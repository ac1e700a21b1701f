"""``pccc passes``: list every registered pass, its levels, summary and options."""

from __future__ import annotations

import argparse
from typing import Any


def describe() -> list[str]:
    """The lines ``pccc passes`` prints."""
    from pccc.passes.pipeline import NAMED
    from pccc.passes.registry import all_passes

    lines = []
    for info in all_passes():
        lines.append(f"{info.name:<20} {info.input_level} -> {info.output_level}  "
                     f"{info.summary}")
        for opt in info.options:
            default = str(opt.default).lower() if isinstance(opt.default, bool) else \
                opt.default
            lines.append(f"    {opt.name}={opt.type.__name__} (default {default})"
                         + (f": {opt.help}" if opt.help else ""))
    lines.append("")
    lines.append("named pipelines:")
    for name, text in NAMED.items():
        lines.append(f"  {name}: {text}")
    return lines


def run(args: argparse.Namespace) -> int:
    print("\n".join(describe()))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("passes", help="list the registered passes and their options",
                       description="List every registered pass (built-in and loaded "
                                   "plugins) with its levels, summary and options.")
    p.set_defaults(func=run)
