"""``pccc convert IN OUT``: rewrite an IR file in another format or at a lower level.

IN is a circuit file of any format, a ``.pcir`` text of any level, or a compiled module
(``.pccm``, whose source circuit, with its current parameters, is read). ``--level`` lowers
the value with the passes of the ``training`` pipeline (every parameter of the source kept),
or, with ``L0``, takes the source circuit of an L1 or L2 value. OUT's format follows its
extension: ``.pcir`` holds any level (an L1 or L2 file embeds its source circuit), the other
formats an L0 circuit (an L1 or L2 value's source circuit is written).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pccc.ir.errors import PcccError

LEVELS = ("L0", "L1", "L2", "L3")


def read_value(path: str, check: bool) -> Any:
    """The IR value in ``path``; a ``.pccm`` file's source circuit."""
    if path.lower().endswith(".pccm"):
        from pccc.artifact import read_artifact

        _, _, source = read_artifact(path)  # (checked as it is read)
        if source is None:
            raise PcccError(f"{path}: the module holds no source circuit")
        return source
    from pccc.api import load
    from pccc.cli.cmd_info import verify_level

    value = load(path)
    if check:
        verify_level(value)
    return value


def lower(value: Any, level: str) -> Any:
    """``value`` at ``level``: lowered by the ``training`` pipeline's passes, or, for L0, the
    source circuit of an L1 or L2 value."""
    have, want = LEVELS.index(value.level), LEVELS.index(level)
    if want == have:
        return value
    if want < have:
        if level == "L0" and value.level in ("L1", "L2"):
            from pccc.ir.parse_lowered import source_of

            return source_of(value)
        raise PcccError(f"--level {level}: the passes only lower, and IN is {value.level} "
                        "(an L1 or L2 value's source circuit is --level L0)")
    from pccc.passes import NAMED, format_pipeline, parse_pipeline, run_pipeline

    steps = [st for st in parse_pipeline(NAMED["training"], start_level=None)
             if have <= LEVELS.index(st.info.input_level) < want]
    return run_pipeline(value, format_pipeline(steps))


def _write(value: Any, out: str, sidecar: bool) -> None:
    from pccc import formats

    if not out.lower().endswith(".pcir"):
        formats.save(value, out)
    elif value.level != "L0":
        from pccc.ir.print_lowered import write_pcir_any

        write_pcir_any(value, out, inline_below=0 if sidecar else 4096)
    elif sidecar:
        from pccc.formats.pcir import save_pcir

        save_pcir(value, Path(out), sidecar=True)
    else:
        formats.save(value, out)


def run(args: argparse.Namespace) -> int:
    from pccc import formats

    formats.check_writable(args.output)  # refuse a bad output before reading anything
    pcir = str(args.output).lower().endswith(".pcir")
    if args.sidecar:
        if not pcir:
            raise PcccError("--sidecar applies to .pcir output only")
        from pccc.files import check_distinct
        from pccc.formats.pcir import sidecar_name

        sidecar = Path(args.output).parent / sidecar_name(Path(args.output))
        check_distinct({"OUT's sidecar": sidecar}, {"IN": args.input})
    if not pcir and args.level not in (None, "L0"):
        raise PcccError(f"--level {args.level}: {Path(args.output).suffix} files hold L0 "
                        "circuits; write lowered levels to .pcir")
    value = read_value(args.input, not args.no_verify)
    level = args.level or (value.level if pcir or value.level == "L3" else "L0")
    if not pcir and level == "L3":
        raise PcccError(f"{args.input}: an L3 plan has no circuit to write as "
                        f"{Path(args.output).suffix}")
    _write(lower(value, level), args.output, args.sidecar)
    print(f"wrote {args.output}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert a circuit between formats, or lower it",
                       description="Read IN and write OUT; formats follow the extensions. "
                                   "IN may be a .pcir file of any level or a compiled module "
                                   "(.pccm: its source circuit); --level lowers the value "
                                   "with the training pipeline's passes. Nothing is written "
                                   "when reading or verifying fails.")
    p.add_argument("input", metavar="IN", help="circuit file, .pcir of any level, or .pccm")
    p.add_argument("output", metavar="OUT", help="file to write (.pcir for L1-L3)")
    p.add_argument("--level", choices=LEVELS,
                   help="the level to write: lower with the training pipeline's passes, or "
                        "L0 for the source circuit of an L1 or L2 file (default: IN's level "
                        "for .pcir output, L0 otherwise)")
    p.add_argument("--no-verify", action="store_true", help="skip the verifier")
    p.add_argument("--sidecar", action="store_true",
                   help="(.pcir) write the parameters to a sidecar beside OUT "
                        "(out.pcir -> out.npz)")
    p.set_defaults(func=run)
