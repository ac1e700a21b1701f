"""``pccc viz FILE -o OUT``: draw a circuit's node vectors (L0), its layer schedule (L2), its
kernel plan (L3) or its kernel schedule (L4) as DOT, SVG, PNG or PDF (see :mod:`pccc.viz`)."""

from __future__ import annotations

import argparse
from typing import Any

from pccc.viz.levels import LEVELS
from pccc.viz.render import ENGINES, FORMATS


def run(args: argparse.Namespace) -> int:
    from pccc.viz.levels import picture_of, read_value
    from pccc.viz.render import choose_engine, format_of, write_picture

    engine = args.engine
    drawn = format_of(args.output) != "dot"
    if drawn:  # (refuse what cannot be drawn before reading FILE)
        engine = choose_engine(args.engine)
    value = read_value(args.file)
    if not args.no_verify:
        from pccc.cli.cmd_info import verify_level

        verify_level(value.value)
    level = args.level or ("L0" if value.value.level in ("L0", "L1", "L2") else value.value.level)
    picture = picture_of(value, level, max_nodes=args.max_nodes, pipeline=args.pipeline)
    write_picture(picture, args.output, engine)
    print(f"wrote {args.output}" + (f" (drawn by {engine})" if drawn else ""))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("viz", help="draw a circuit, its layer schedule or its kernels",
                       description="Draw FILE at a level: L0, a box per node vector with its "
                                   "kind, size and scope; L2, the layer schedule (the inputs, "
                                   "then each layer's product and sum partitions, with their "
                                   "edge counts); L3, the kernel plan's layers; L4, the "
                                   "kernel launches per sum part in order. Above "
                                   "--max-nodes boxes, vectors are grouped by depth (L0), "
                                   "layers into ranges (L2, L3) and parts by layer (L4); the "
                                   "picture's title says so. "
                                   "OUT's extension picks the format: "
                                   + ", ".join(f".{f}" for f in FORMATS) + ".")
    p.add_argument("file", help="circuit file (.pcir of any level, .jpc, .psdd, .spn, ...) or "
                                "compiled module (.pccm)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the picture to write (.dot needs nothing; .svg, .png and .pdf are "
                        "drawn by Graphviz's dot program when on the PATH, else by matplotlib)")
    p.add_argument("--level", choices=LEVELS, default=None,
                   help="what to draw: L0 node vectors, L2 layer schedule, L3 kernel plan, "
                        "L4 kernel schedule (default: L0; an L3 or L4 file's own level)")
    p.add_argument("--max-nodes", type=int, default=200, metavar="N",
                   help="the most boxes drawn one by one; above, vectors or layers are grouped")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="what draws .svg, .png and .pdf; auto: dot when on the PATH, else "
                        "matplotlib")
    p.add_argument("-p", "--pipeline", default=None,
                   help="the passes that lower FILE for L2 to L4 (default: training, or a "
                        "compiled module's own pipeline)")
    p.add_argument("--no-verify", action="store_true", help="draw FILE without verifying it")
    p.set_defaults(func=run)
