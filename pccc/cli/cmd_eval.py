"""``pccc eval FILE --data DATA``: log-likelihood of each example, and their mean.

The last line of stdout is ``mean log-likelihood: <float>`` (natural log, mean over examples).
A circuit whose root vector holds ``n > 1`` nodes prints one such line per root instead,
``root r: mean log-likelihood: <float>``. ``--out LL.npy`` writes the per-example values as
float64, ``[N]`` (``[N, n]`` for ``n`` roots); nothing is written on failure. The first line
names the backend, device and dtype (``backend: triton (cuda, float32)``): a circuit file runs
on the torch backend in float64 on the CPU (as exact as the float64 reference, and 4-5 times
faster on the zoo's PSDDs: ``docs/benchmarks.md``) and on the Triton backend on a CUDA device
(torch where Triton does not import) unless ``--backend`` names another; ``--backend
reference`` runs the numpy oracle. A ``.pcir`` file of a lowered level (L1, L2, L3) runs on the
reference evaluator of its level, or, for another backend, through the passes left down to a
plan; a plan's data is checked against its ``var_cards``.

Rows are evaluated ``--batch-size`` at a time, fewer where a batch would need more working
memory than ``--max-memory`` (a note on stderr says so). A progress bar on stderr follows long
runs: with ``--progress auto`` on a terminal once a run has taken 2 s, ``on`` always, ``off``
never.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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
from pccc.data import load_data
from pccc.ir.circuit import Circuit
from pccc.ir.errors import DataError, PcccError

Evaluator = Callable[[np.ndarray], np.ndarray]


def _reference(circuit: Circuit, device: str) -> Evaluator:
    from pccc.backends.reference import log_likelihood

    if device != "cpu":
        raise PcccError("the reference backend runs on the CPU only (--device cpu)")
    return lambda x: log_likelihood(circuit, x)


def _compiled(circuit: Circuit, name: str, device: str, dtype: str | None) -> Evaluator:
    import pccc

    if not hasattr(pccc, "compile"):
        raise PcccError(f"backend {name!r} is not available yet (only 'reference')")
    check_device(device)
    return _runner(pccc.compile(circuit, backend=name, device=device, dtype=dtype), device)


def _module_plan(fn: Evaluator) -> Any:
    """The plan of the module behind a runner (for its memory estimate)."""
    return fn.model.plan  # type: ignore[attr-defined]


def _runner(model: Any, device: str) -> Evaluator:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x) if np.issubdtype(x.dtype, np.floating) else x == -1
        xt = torch.from_numpy(np.where(missing, 0, x)).to(device)
        mt = torch.from_numpy(missing).to(device)
        with torch.no_grad():
            ll = model(xt, mt)
        return ll.detach().to("cpu", torch.float64).numpy()

    run.model = model  # type: ignore[attr-defined]
    return run


def fits_cards(x: np.ndarray, cards: np.ndarray, name: str) -> None:
    """Refuse data that does not fit a module without its source circuit: the width, and
    each value of a discrete variable (``cards > 0``): an integer in ``0 .. card - 1``, or
    missing (``-1``, NaN).

    Raises:
        DataError: naming ``name`` and the (1-based) row and column.
    """
    if x.ndim != 2 or x.shape[1] != len(cards):
        raise DataError(f"{name}: {x.shape[-1]} columns, but the module has {len(cards)} "
                        "variables")
    xf = x.astype(np.float64, copy=False)
    seen = ~np.isnan(xf) & (xf != -1) & (cards > 0)[None, :]
    with np.errstate(invalid="ignore"):
        bad = seen & ((xf != np.floor(xf)) | (xf < 0) | (xf >= cards[None, :]))
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{name}: row {r + 1}, column {c + 1}: value {xf[r, c]:g} is outside "
                        f"0..{int(cards[c]) - 1}, the values of variable {c}")


def _from_module(path: str, backend: str | None, device: str, dtype: str | None
                 ) -> tuple[Circuit | None, Evaluator, str, str]:
    """A ``.pccm`` compiled module: run as compiled (its own backend unless ``--backend``
    names another; ``reference`` evaluates its circuit with the oracle). Returns the circuit,
    the evaluator (with the plan's ``cards`` to check data against where the module holds no
    circuit), the backend's name and its dtype."""
    model, circuit = load_pccm(path, backend, device, dtype, "evaluate")
    if backend == "reference":
        return circuit, _reference(circuit, device), "reference", "float64"
    run = _runner(model, device)
    if circuit is None:  # (load_data checks data against a circuit; this, the plan's cards)
        run.cards = np.asarray(model.plan.var_cards)  # type: ignore[attr-defined]
    return circuit, run, model.backend_name, dtype_name(model)


def read_checked(path: str) -> Any:
    """The IR value in ``path`` (any level), verified: a plan read from a file with every
    check, its values too."""
    from pccc.api import load
    from pccc.ir.plan_verify import verify_plan
    from pccc.passes.manager import verify_any

    value = load(path)
    if value.level == "L3":
        verify_plan(value)
    else:
        verify_any(value)
    return value


def _lowered(value: Any, backend: str, device: str, dtype: str | None
             ) -> tuple[Circuit | None, Evaluator]:
    """An L1-L3 value: the reference evaluator of its level, or the passes left down to a
    plan and the backend. Returns the circuit the data is checked against (None for a plan,
    whose ``var_cards`` the evaluator carries) and the evaluator."""
    circuit = getattr(value, "circuit", None)
    fn: Evaluator
    if backend == "reference":
        from pccc.backends.reference.lowered import evaluate_any

        if device != "cpu":
            raise PcccError("the reference backend runs on the CPU only (--device cpu)")
        fn = lambda x: evaluate_any(value, x)  # noqa: E731
    else:
        import torch

        from pccc.backends import registry
        from pccc.cli.cmd_opt import default_pipeline
        from pccc.passes import run_pipeline

        check_device(device)
        factory = registry.get(backend)
        plan = value if value.level == "L3" else run_pipeline(value,
                                                              default_pipeline(value.level))
        fn = _runner(factory(plan, device=device, dtype=getattr(torch, dtype or "float32")),
                     device)
    if circuit is None:  # (load_data checks data against a circuit; this, the plan's cards)
        fn.cards = np.asarray(value.var_cards)  # type: ignore[attr-defined]
    return circuit, fn


def evaluator(circuit: Circuit, backend: str, device: str = "cpu", dtype: str | None = None
              ) -> Evaluator:
    """A function from a data batch to float64 log-likelihoods, for the named backend."""
    if backend == "reference":
        return _reference(circuit, device)
    return _compiled(circuit, backend, device, dtype)


def log_likelihoods(fn: Evaluator, x: np.ndarray, batch_size: int,
                    progress: float | None = None) -> np.ndarray:
    """Evaluate ``fn`` over ``x`` in batches of ``batch_size`` rows: float64 ``[N]`` (``[N, n]``
    for ``n`` roots). ``progress``: a bar on stderr, shown once the run has taken that many
    seconds (None: no bar)."""
    from tqdm import tqdm

    parts = []
    with tqdm(total=x.shape[0], unit=" rows", delay=progress or 0.0, disable=progress is None,
              file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        for i in range(0, x.shape[0], batch_size):
            parts.append(np.asarray(fn(x[i:i + batch_size]), dtype=np.float64))
            bar.update(min(batch_size, x.shape[0] - i))
    return np.concatenate(parts) if parts else np.zeros(0)


def row_bytes(value: Any, backend: str, dtype: str) -> int:
    """About how many bytes of working memory one row of data takes to evaluate: a value per
    scalar node (the reference keeps every node's; a module, its node and element slots), a
    quarter to a half more for temporaries, and twice the largest sum vector's ``[n, m]``
    table of terms (measured on plants: 8.4 bytes per node and row for the reference, 8.8 for
    torch in float64)."""
    from pccc.ir.circuit import SumVector
    from pccc.ir.plan import KernelPlan, ProductLayer

    size = 8 if backend == "reference" or dtype == "float64" else 4
    if isinstance(value, KernelPlan):
        elems = max([ly.num_elem_slots for ly in value.layers
                     if isinstance(ly, ProductLayer)], default=0)
        return int(1.5 * size * (value.num_node_slots + elems))
    c = getattr(value, "circuit", value)
    nodes = sum(nd.n for nd in c.nodes)
    terms = max([nd.n * sum(c.nodes[ch].n for ch in nd.children) for nd in c.nodes
                 if isinstance(nd, SumVector)], default=0)
    return int(size * ((1.25 if backend == "reference" else 1.5) * nodes + 2 * terms))


def fits_memory(path: str, per_row: int, max_gib: float) -> None:
    """Refuse a circuit one example of which needs more than ``max_gib`` GiB to evaluate (a
    vector of a billion nodes, say), before anything is allocated for it."""
    if per_row > max_gib * (1 << 30):
        raise PcccError(f"{path}: one example needs about {per_row / (1 << 30):.1f} GiB of "
                        f"working memory to evaluate, more than --max-memory {max_gib:g}")


def bounded_batch(requested: int, per_row: int, max_gib: float) -> int:
    """The rows evaluated at a time: ``requested``, fewer where they would take more than
    ``max_gib`` GiB; a note on stderr says when."""
    fit = max(1, int(max_gib * (1 << 30)) // max(per_row, 1))
    if fit >= requested:
        return requested
    print(f"pccc eval: note: --batch-size {requested} would need about "
          f"{requested * per_row / (1 << 30):.1f} GiB of working memory; evaluating {fit} "
          f"rows at a time (--max-memory {max_gib:g})", file=sys.stderr)
    return fit


def summary_lines(ll: np.ndarray) -> list[str]:
    """The mean log-likelihood lines of ``ll`` ``[N]`` (one line) or ``[N, n]`` (one per root,
    ``root r: ...``)."""
    if ll.ndim == 1:
        return [f"mean log-likelihood: {float(np.mean(ll))!r}"]
    return [f"root {r}: mean log-likelihood: {float(np.mean(ll[:, r]))!r}"
            for r in range(ll.shape[1])]


def _check_out(out: str | None) -> Path | None:
    if out is None:
        return None
    p = Path(out)
    if p.suffix.lower() != ".npy":
        raise PcccError(f"--out {out}: the output must be a .npy file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise PcccError(f"--out {out}: folder {parent} does not exist")
    return p


def run(args: argparse.Namespace) -> int:
    from pccc.formats import atomic_write

    out = _check_out(args.out)
    circuit: Circuit | None
    if str(args.file).lower().endswith(".pccm"):
        circuit, fn, args.backend, dtype = _from_module(args.file, args.backend, args.device,
                                                        args.dtype)
        print(describe(args.backend, args.device, dtype), flush=True)
        per_row = row_bytes(circuit if args.backend == "reference" else _module_plan(fn),
                            args.backend, dtype)
        fits_memory(args.file, per_row, args.max_memory)
    else:
        # (torch in float64 on the CPU; on a CUDA device, Triton where it imports)
        args.backend = args.backend or default_backend(args.device)
        value = read_checked(args.file)
        dtype = "float64" if args.backend == "reference" else args.dtype or (
            "float32" if is_cuda(args.device) else "float64")
        per_row = row_bytes(value, args.backend, dtype)
        fits_memory(args.file, per_row, args.max_memory)
        print(describe(args.backend, args.device, dtype), flush=True)
        if value.level == "L0":
            circuit, fn = value, evaluator(value, args.backend, args.device, dtype)
        else:
            circuit, fn = _lowered(value, args.backend, args.device, dtype)
    x = load_data(args.data, circuit, key=args.key)
    if getattr(fn, "cards", None) is not None:
        fits_cards(x, fn.cards, args.data)  # type: ignore[attr-defined]
    batch = bounded_batch(args.batch_size, per_row, args.max_memory)
    delay = {"on": 0.0, "auto": 2.0 if sys.stderr.isatty() else None}.get(args.progress)
    ll = log_likelihoods(fn, x, batch, progress=delay)
    if out is not None:
        with atomic_write(out) as f:
            np.save(f, ll)
    print(f"examples: {ll.shape[0]}")
    for line in summary_lines(ll):
        print(line)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate log-likelihoods of data under a circuit",
                       description="Print the mean log-likelihood (natural log) of the examples "
                                   "in DATA; missing values are marginalized.")
    p.add_argument("file", help="circuit file (.pcir of any level: L1-L3 run through the "
                                "reference evaluator of their level or the passes left and a "
                                "backend), or a compiled module (.pccm)")
    p.add_argument("--data", required=True,
                   help=".npy/.npz ([N, V] integers, -1 = missing) or comma-separated text "
                        "(.data/.csv/.txt, optionally .gz; '?' or empty = missing)")
    p.add_argument("--key", help="array name inside a .npz data file (default: the first)")
    p.add_argument("--backend", default=None,
                   help="torch (the default on the CPU, in float64), triton (the default on a "
                        "CUDA device where Triton imports), reference (the float64 numpy "
                        "oracle), ...; a .pccm runs on the backend it names unless this is "
                        "given")
    p.add_argument("--device", default="cpu", help="torch device of compiled backends")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="compute dtype of compiled backends (default: float64 on the CPU, "
                        "float32 on a CUDA device; a .pccm: its own)")
    p.add_argument("--batch-size", type=int, default=4096, metavar="N",
                   help="examples evaluated at a time (fewer where --max-memory says so)")
    p.add_argument("--max-memory", type=float, default=2.0, metavar="GIB",
                   help="working memory a batch may take, in GiB (about); a larger "
                        "--batch-size is split")
    p.add_argument("--progress", default="auto", choices=["auto", "on", "off"],
                   help="a progress bar on stderr: auto shows it on a terminal once the run "
                        "has taken 2 s")
    p.add_argument("--out", metavar="LL.npy", help="write per-example log-likelihoods here")
    p.set_defaults(func=run)
