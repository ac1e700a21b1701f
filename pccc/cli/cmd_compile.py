"""``pccc compile FILE -o model.pccm``: compile a circuit into an executable module artifact.

The artifact holds the L3 plan, the parameters, and the pipeline, options and pccc version
that made it; ``pccc.load_module`` and ``pccc eval model.pccm`` run it without re-running the
passes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pccc.ir.errors import PcccError


def run(args: argparse.Namespace) -> int:
    from pccc.artifact import write_artifact
    from pccc.cli.cmd_info import load_verified
    from pccc.passes import compile_plan

    out = Path(args.output)
    if not out.name.lower().endswith(".pccm"):
        raise PcccError(f"-o {args.output}: the output must be a .pccm file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise PcccError(f"-o {args.output}: folder {parent} does not exist")
    circuit = load_verified(args.file)
    training = not args.inference
    plan = compile_plan(circuit, args.pipeline, training=training)
    pipeline = dict(plan.meta).get("pipeline", args.pipeline)
    write_artifact(out, plan, circuit, backend=args.backend, dtype=args.dtype,
                   pipeline=pipeline, options={"training": training})
    print(f"wrote {out}: backend {args.backend}, {args.dtype}, pipeline {pipeline}")
    print(plan.summary().splitlines()[0])
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("compile", help="compile a circuit into an executable module (.pccm)",
                       description="Run the pass pipeline and write the plan, parameters and "
                                   "build information as a .pccm artifact.")
    p.add_argument("file", help="circuit file (any readable format)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.pccm",
                   help="the compiled module to write (.pccm)")
    p.add_argument("-p", "--pipeline", default=None,
                   help="pass pipeline (default: the training pipeline)")
    p.add_argument("--inference", action="store_true",
                   help="use the inference pipeline (may merge parameters) instead of training")
    p.add_argument("--backend", default="torch", help="backend to load the module with")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="compute dtype of the loaded module")
    p.set_defaults(func=run)
