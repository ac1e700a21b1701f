"""``pccc opt FILE [-p PIPELINE]``: run passes on a circuit file and print (or write) the IR.

The input is any circuit file (``.jpc``, ``.psdd``, ``.pcir`` of any level, ...). Without
``-p`` the ``default`` pipeline runs from the input's level down to L3; ``--backend triton``
goes on to the Triton backend's L4 kernel schedule (``schedule-kernels``). Instruments:
``--print-after-all``, ``--print-after NAME``, ``--dump-dir DIR``, ``--time-passes``, ``--stats``,
``--stop-after NAME``; the IR is verified after every pass unless ``--no-verify``. Passes of
your own load with ``--load my_passes.py`` (or a module name, or the ``PCCC_PLUGINS``
environment variable, or a ``pccc.passes`` entry point of an installed package).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pccc.ir.errors import PassError


def read_any(path: str, *, allow_elided: bool = False) -> Any:
    """An IR value from a file: ``.pcir`` of any level, or a circuit format (L0).

    A ``.pcir`` file with elided arrays is refused unless ``allow_elided`` (then they are
    filled with placeholder values: uniform weights and distributions, zeros)."""
    from pccc.api import load

    return load(path, allow_elided=allow_elided)


def default_pipeline(level: str) -> str:
    """The ``default`` pipeline from ``level`` on (empty at L3)."""
    from pccc.passes.pipeline import NAMED, format_pipeline, parse_pipeline

    steps = parse_pipeline(NAMED["default"], start_level=None)
    for i, st in enumerate(steps):
        if st.info.input_level == level:
            return format_pipeline(steps[i:])
    return ""


def to_schedule(pipeline: str, level: str) -> str:
    """``pipeline`` followed by ``schedule-kernels`` where it ends at L3 (or is empty on an
    L3 input): the Triton backend's L4 schedule of the result."""
    from pccc.passes.pipeline import parse_pipeline

    steps = parse_pipeline(pipeline, start_level=level)
    end = steps[-1].info.output_level if steps else level
    if end != "L3":
        return pipeline
    return f"{pipeline},schedule-kernels" if pipeline.strip() else "schedule-kernels"


def _instruments(args: argparse.Namespace) -> tuple[list[Any], Any]:
    from pccc.passes.instruments import DumpDir, PrintAfter, PrintStats, TimePasses

    ins: list[Any] = []
    if args.print_after_all or args.print_after:
        names = None if args.print_after_all else set(args.print_after)
        ins.append(PrintAfter(names, sys.stdout, args.elide_above, args.embed_source))
    if args.dump_dir:
        ins.append(DumpDir(args.dump_dir, embed_source=args.embed_source))
    if args.stats:
        ins.append(PrintStats(sys.stderr))
    timer = TimePasses() if args.time_passes else None
    if timer is not None:
        ins.append(timer)
    return ins, timer


def run(args: argparse.Namespace) -> int:
    from pccc.passes.instruments import ir_text
    from pccc.passes.manager import level_of, run_pipeline

    ir = read_any(args.file, allow_elided=args.allow_elided)
    pipeline = args.pipeline if args.pipeline is not None else default_pipeline(level_of(ir))
    if args.backend == "triton":
        pipeline = to_schedule(pipeline, level_of(ir))
    ins, timer = _instruments(args)
    repro = Path(args.dump_dir) if args.dump_dir else Path.cwd()
    out = run_pipeline(ir, pipeline, verify=not args.no_verify, instruments=ins,
                       stop_after=args.stop_after, repro_dir=repro)
    if timer is not None:
        print(timer.report(), file=sys.stderr)
    if args.output:
        _write(out, args.output)
    elif not args.print_after_all:
        sys.stdout.write(ir_text(out, args.elide_above))
    return 0


def _write(ir: Any, path: str) -> None:
    from pccc.ir.print_lowered import write_pcir_any

    if path.lower().endswith(".pcir") or getattr(ir, "level", "L0") != "L0":
        if not path.lower().endswith(".pcir"):
            raise PassError(f"-o {path}: {ir.level} IR is written as .pcir only")
        write_pcir_any(ir, path)
        return
    from pccc import formats

    formats.save(ir, path)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("opt", help="run passes on a circuit and print the resulting IR",
                       description=__doc__.splitlines()[0].split(": ", 1)[1] +
                       " Pipelines look like 'canonicalize,group-blocks{block-size=64},"
                       "partition-layers,layout-params'; 'pccc passes' lists the passes.")
    p.add_argument("file", help="circuit file (.pcir of any level, .jpc, .psdd, ...)")
    p.add_argument("-p", "--pipeline", help="pipeline string (default: 'default' from the "
                   "input's level down to L3)")
    p.add_argument("--backend", choices=["triton"], help="go on to this backend's kernel "
                   "schedule (L4): 'schedule-kernels' after a pipeline that ends at L3")
    p.add_argument("-o", "--output", help="write the result here (.pcir; an L0 result may "
                   "use any writable circuit format) instead of printing it")
    p.add_argument("--no-verify", action="store_true", help="do not verify after every pass")
    p.add_argument("--print-after-all", action="store_true",
                   help="print the IR after every pass")
    p.add_argument("--print-after", action="append", metavar="NAME", default=[],
                   help="print the IR after pass NAME (repeatable)")
    p.add_argument("--dump-dir", metavar="DIR", help="write NNN_<pass>.pcir files to DIR")
    p.add_argument("--time-passes", action="store_true", help="report the time of each pass")
    p.add_argument("--stats", action="store_true",
                   help="print the summary of the input and of the IR after every pass (sizes, "
                        "tiles, layers, partitions, padding, bytes) on stderr")
    p.add_argument("--embed-source", action="store_true",
                   help="L1 and L2 dumps (--print-after*, --dump-dir) hold their source circuit "
                        "instead of naming it by digest")
    p.add_argument("--stop-after", metavar="NAME", help="stop after pass NAME")
    p.add_argument("--elide-above", type=int, default=None, metavar="N",
                   help="print arrays larger than N as their shape only (default: 256 when "
                        "printing to a terminal, nothing elided otherwise; -1 prints "
                        "everything); files written with -o or --dump-dir are never elided")
    p.add_argument("--allow-elided", action="store_true",
                   help="read a .pcir input whose arrays were elided, filling them with "
                        "placeholder values (uniform weights and distributions, zeros); "
                        "without it such a file is refused")
    p.set_defaults(func=_run_checked)


#: arrays larger than this print as their shape only on a terminal (see --elide-above)
TERMINAL_ELIDE_ABOVE = 256


def _run_checked(args: argparse.Namespace) -> int:
    if args.elide_above is None:  # printing for a human may elide; writing a file must not
        args.elide_above = TERMINAL_ELIDE_ABOVE if sys.stdout.isatty() else -1
    if args.elide_above < 0:
        args.elide_above = None
    return run(args)
