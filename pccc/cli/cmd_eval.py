"""``pccc eval FILE --data DATA``: log-likelihood of each example, and their mean.

The last line of stdout is ``mean log-likelihood: <float>`` (natural log, mean over examples).
A circuit whose root vector holds ``n > 1`` nodes prints one such line per root instead,
``root r: mean log-likelihood: <float>``. ``--out LL.npy`` writes the per-example values as
float64, ``[N]`` (``[N, n]`` for ``n`` roots); nothing is written on failure. The first line
names the backend, device and dtype (``backend: triton (cuda, float32)``): a circuit file runs
on the float64 reference on the CPU and on the Triton backend on a CUDA device (torch where
Triton does not import) unless ``--backend`` names another. A ``.pcir`` file of a lowered level
(L1, L2, L3) runs on the reference evaluator of its level, or, for another backend, through the
passes left down to a plan; a plan's data is checked against its ``var_cards``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pccc.cli.devices import default_backend, describe, is_cuda
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
    _check_device(device)
    return _runner(pccc.compile(circuit, backend=name, device=device, dtype=dtype), device)


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise PcccError("--device cuda: no CUDA device is available here")


def _runner(model: Any, device: str) -> Evaluator:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x) if np.issubdtype(x.dtype, np.floating) else x == -1
        xt = torch.from_numpy(np.where(missing, 0, x)).to(device)
        mt = torch.from_numpy(missing).to(device)
        with torch.no_grad():
            ll = model(xt, mt)
        return ll.detach().to("cpu", torch.float64).numpy()

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
    import pccc

    if backend != "reference":
        _check_device(device)
    model = pccc.load_module(path, device=device if backend != "reference" else "cpu",
                             dtype=dtype, backend=None if backend == "reference" else backend)
    circuit = model.to_circuit() if model.source_circuit is not None else None
    if backend == "reference":
        if circuit is None:
            raise PcccError(f"{path}: the module holds no source circuit to evaluate")
        return circuit, _reference(circuit, device), "reference", "float64"
    run = _runner(model, device)
    if circuit is None:  # (load_data checks data against a circuit; this, the plan's cards)
        run.cards = np.asarray(model.plan.var_cards)  # type: ignore[attr-defined]
    return circuit, run, model.backend_name, str(model.dtype).replace("torch.", "")


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

        _check_device(device)
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


def log_likelihoods(fn: Evaluator, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Evaluate ``fn`` over ``x`` in batches of ``batch_size`` rows: float64 ``[N]`` (``[N, n]``
    for ``n`` roots)."""
    parts = [np.asarray(fn(x[i:i + batch_size]), dtype=np.float64)
             for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0)


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
    else:
        # (the float64 reference on the CPU; on a CUDA device, Triton where it imports)
        args.backend = args.backend or (default_backend(args.device) if is_cuda(args.device)
                                        else "reference")
        value = read_checked(args.file)
        dtype = "float64" if args.backend == "reference" else args.dtype or "float32"
        print(describe(args.backend, args.device, dtype), flush=True)
        if value.level == "L0":
            circuit, fn = value, evaluator(value, args.backend, args.device, args.dtype)
        else:
            circuit, fn = _lowered(value, args.backend, args.device, args.dtype)
    x = load_data(args.data, circuit, key=args.key)
    if getattr(fn, "cards", None) is not None:
        fits_cards(x, fn.cards, args.data)  # type: ignore[attr-defined]
    ll = log_likelihoods(fn, x, args.batch_size)
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
                   help="reference (float64 numpy, default for circuit files on the CPU), "
                        "torch, triton (default on a CUDA device where Triton imports), ...; "
                        "a .pccm runs on the backend it names unless this is given")
    p.add_argument("--device", default="cpu", help="torch device of compiled backends")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="compute dtype of compiled backends (default: the backend's)")
    p.add_argument("--batch-size", type=int, default=4096, metavar="N",
                   help="examples evaluated at a time")
    p.add_argument("--out", metavar="LL.npy", help="write per-example log-likelihoods here")
    p.set_defaults(func=run)
