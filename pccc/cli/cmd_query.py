"""``pccc query`` and ``pccc sample``: the queries of :mod:`pccc.query` on the command line.

- ``pccc query CIRCUIT --data DATA --conditional -o OUT.npy``: ``log p(X_v = k | e)`` for every
  row, variable and value, float64 ``[N, V, K]``.
- ``pccc query CIRCUIT --data DATA --mpe -o OUT`` (``.npy`` or ``.csv``): each row completed by
  max-product decoding; prints the mean log-likelihood of the completions.
- ``pccc sample CIRCUIT -n N [--evidence DATA] [--seed S] -o OUT`` (``.npy`` or ``.csv``):
  ``N`` exact samples, given the evidence (one row for all samples, or ``N`` rows).

``CIRCUIT`` is a circuit file or a compiled module (``.pccm``). The backend is chosen as by
``pccc eval``: a circuit file runs on the float64 reference on the CPU and on the Triton backend
on a CUDA device (torch where Triton does not import), a ``.pccm`` on the backend it names;
``--backend`` overrides, and the first line of the output names backend, device and dtype.
Written rows are int64 (float64 when a variable is continuous); a value left missing (a row of
impossible evidence) is ``-1`` (NaN) in ``.npy`` and ``?`` in ``.csv``. Outputs are written
atomically; a user error writes nothing and exits with status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pccc.cli.devices import (
    check_device,
    default_backend,
    describe,
    dtype_name,
    is_cuda,
    load_pccm,
)
from pccc.ir.circuit import Circuit
from pccc.ir.errors import PcccError


def check_output(out: str, suffixes: tuple[str, ...]) -> Path:
    """The output path, refused before any work when its format or folder is wrong."""
    p = Path(out)
    if p.suffix.lower() not in suffixes:
        raise PcccError(f"-o {out}: the output must be a {' or '.join(suffixes)} file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise PcccError(f"-o {out}: folder {parent} does not exist")
    return p


def open_model(path: str, backend: str | None, device: str, dtype: str | None
               ) -> tuple[Any, Circuit | None, str]:
    """``(model, circuit to check data against, first output line)`` for a circuit file or
    a ``.pccm``: the circuit itself for the reference backend, else a compiled module."""
    import pccc
    from pccc.cli.cmd_info import load_verified

    if backend == "reference" and is_cuda(device):
        raise PcccError("the reference backend runs on the CPU only (--device cpu)")
    if str(path).lower().endswith(".pccm"):
        model, circuit = load_pccm(path, backend, device, dtype, "query")
        if backend == "reference":
            return circuit, circuit, describe("reference", "cpu", "float64")
        return model, circuit, describe(model.backend_name, device, dtype_name(model))
    backend = backend or (default_backend(device) if is_cuda(device) else "reference")
    circuit = load_verified(path)
    if backend == "reference":
        return circuit, circuit, describe("reference", device, "float64")
    check_device(device)
    model = pccc.compile(circuit, backend=backend, device=device, dtype=dtype)
    return model, circuit, describe(backend, device, dtype_name(model))


def _csv_text(rows: np.ndarray) -> bytes:
    """Comma-separated rows; a missing value (``-1`` in integer rows, NaN) is ``?``."""
    if np.issubdtype(rows.dtype, np.floating):
        text = np.char.mod("%.17g", rows)
        text = np.where(np.isnan(rows), "?", text)
    else:
        text = np.where(rows == -1, "?", np.char.mod("%d", rows))
    return "".join(",".join(r) + "\n" for r in text.tolist()).encode("ascii")


def write_rows(out: Path, rows: np.ndarray) -> None:
    """Rows as ``.npy`` or ``.csv`` (by the suffix), written atomically."""
    from pccc.formats import atomic_write

    with atomic_write(out) as f:
        if out.suffix.lower() == ".npy":
            np.save(f, rows, allow_pickle=False)
        else:
            f.write(_csv_text(rows))


def _numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def run_query(args: argparse.Namespace) -> int:
    from pccc import query
    from pccc.data import load_data

    out = check_output(args.output, (".npy",) if args.conditional else (".npy", ".csv"))
    model, circuit, line = open_model(args.file, args.backend, args.device, args.dtype)
    print(line, flush=True)
    x = load_data(args.data, circuit, key=args.key)
    if args.conditional:
        post = _numpy(query.conditional(model, x, batch_size=args.batch_size))
        write_rows(out, post.astype(np.float64))
        print(f"rows: {post.shape[0]}")
        print(f"wrote {out}: log p(X_v = k | e), shape {list(post.shape)}")
        return 0
    rows, ll = query.mpe(model, x, batch_size=args.batch_size)
    rows_np, ll_np = _numpy(rows), _numpy(ll).astype(np.float64)
    write_rows(out, rows_np)
    print(f"rows: {rows_np.shape[0]}")
    dead = int((~np.isfinite(ll_np)).sum())
    if dead:
        print(f"rows of impossible evidence (left incomplete): {dead}")
    live = ll_np[np.isfinite(ll_np)]
    if len(live):
        print(f"mean log-likelihood of the completions: {float(live.mean())!r}")
    print(f"wrote {out}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from pccc import query
    from pccc.data import load_data

    out = check_output(args.output, (".npy", ".csv"))
    if args.num_samples < 1:
        raise PcccError(f"-n must be >= 1, got {args.num_samples}")
    model, circuit, line = open_model(args.file, args.backend, args.device, args.dtype)
    print(line, flush=True)
    evidence = None
    if args.evidence is not None:
        evidence = load_data(args.evidence, circuit, key=args.key)
        if len(evidence) not in (1, args.num_samples):
            raise PcccError(f"--evidence {args.evidence}: {len(evidence)} rows; expected 1 or "
                            f"-n = {args.num_samples}")
    draws = _numpy(query.sample(model, args.num_samples, evidence, args.seed,
                                batch_size=args.batch_size))
    write_rows(out, draws)
    print(f"samples: {draws.shape[0]}")
    print(f"wrote {out}")
    return 0


def _common(p: Any) -> None:
    p.add_argument("file", help="circuit file, or a compiled module (.pccm)")
    p.add_argument("--key", help="array name inside a .npz data file (default: the first)")
    p.add_argument("--backend", default=None,
                   help="reference (float64 numpy, default for circuit files on the CPU), "
                        "torch, triton (default on a CUDA device where Triton imports); a "
                        ".pccm runs on the backend it names unless this is given")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="compute dtype of compiled backends (default: the backend's)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="rows per pass (default: by the circuit's size)")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("query", help="conditionals or MPE completions of data rows",
                       description="Answer a query for every row of DATA (-1, '?' or empty: "
                                   "missing): per-variable conditionals given the observed "
                                   "values, or the max-product (MPE) completion.")
    _common(p)
    p.add_argument("--data", required=True,
                   help=".npy/.npz ([N, V], -1 = missing) or comma-separated text")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--conditional", action="store_true",
                       help="write log p(X_v = k | e) as float64 [N, V, K] (.npy)")
    which.add_argument("--mpe", action="store_true",
                       help="write the completed rows (.npy or .csv)")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.set_defaults(func=run_query)


def add_sample_parser(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw exact samples, optionally given evidence",
                       description="Draw N exact samples of the circuit, given the observed "
                                   "values of --evidence (one row for all samples, or N rows).")
    _common(p)
    p.add_argument("-n", "--num-samples", type=int, required=True, metavar="N",
                   help="samples to draw")
    p.add_argument("--evidence", default=None, metavar="DATA",
                   help="evidence rows (-1, '?' or empty: free), as --data of pccc eval")
    p.add_argument("--seed", type=int, default=None, help="makes the draw reproducible")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the samples (.npy or .csv)")
    p.set_defaults(func=run_sample)
