"""``pccc convert IN OUT``: rewrite a circuit in another format (chosen by extension)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pccc.cli.cmd_info import load_verified


def run(args: argparse.Namespace) -> int:
    from pccc import formats

    formats.check_writable(args.output)  # refuse a bad output before reading anything
    if args.sidecar:
        from pccc.files import check_distinct
        from pccc.formats.pcir import sidecar_name

        sidecar = Path(args.output).parent / sidecar_name(Path(args.output))
        check_distinct({"OUT's sidecar": sidecar}, {"IN": args.input})
    circuit = load_verified(args.input, check=not args.no_verify)
    if args.sidecar:
        if not str(args.output).lower().endswith(".pcir"):
            from pccc.ir.errors import PcccError

            raise PcccError("--sidecar applies to .pcir output only")
        from pccc.formats.pcir import save_pcir

        save_pcir(circuit, Path(args.output), sidecar=True)
    else:
        formats.save(circuit, args.output)
    print(f"wrote {args.output}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert a circuit between formats",
                       description="Read IN and write OUT; formats follow the extensions. "
                                   "Nothing is written when reading or verifying fails.")
    p.add_argument("input", metavar="IN", help="circuit file to read")
    p.add_argument("output", metavar="OUT", help="circuit file to write")
    p.add_argument("--no-verify", action="store_true", help="skip the verifier")
    p.add_argument("--sidecar", action="store_true",
                   help="(.pcir) write the parameters to a sidecar beside OUT "
                        "(out.pcir -> out.npz)")
    p.set_defaults(func=run)
