"""Training compiled circuits with EM: epochs, validation, early stopping, learning curves.

:func:`train` runs mini-batch EM (one step per batch) or full-batch EM (one step per epoch)
and keeps the parameters of the epoch with the best validation log-likelihood. Training stops
after the current batch when ``TrainConfig.stop`` says so (``pccc train`` asks it on Ctrl-C),
or at a ``KeyboardInterrupt``; the best parameters so far are restored all the same, so the
caller can still save them.

Example::

    model = pccc.compile(circuit, backend="torch")
    hist = train(model, ds.train, ds.valid, TrainConfig(epochs=50))
    print(hist.best_epoch, hist.valid_ll[-1])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pccc.ir.circuit import Circuit
from pccc.ir.errors import DataError

LN2 = math.log(2.0)


@dataclass
class TrainConfig:
    """Options of :func:`train`."""

    epochs: int = 50
    batch_size: int = 512
    em: str = "minibatch"
    """``minibatch`` (a step per batch) or ``fullbatch`` (a step per epoch)"""
    step_size: float = 0.1
    pseudocount: float = 0.1
    patience: int = 5
    """stop after this many epochs without a better validation log-likelihood (0: never)"""
    seed: int = 0
    eval_batch_size: int = 2048
    progress: bool = True
    """a tqdm bar per epoch"""
    max_seconds: float | None = None
    """stop after the epoch that crosses this much training time"""
    stop: Callable[[], bool] | None = None
    """asked after every batch (of training and of evaluation): True stops training there,
    as an interruption (``History.interrupted``)"""


class Stopped(Exception):
    """Raised inside :func:`train` and :func:`evaluate` when ``stop`` asks for it."""


@dataclass
class History:
    """Per-epoch learning curves and the outcome of :func:`train`."""

    train_ll: list[float] = field(default_factory=list)
    valid_ll: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    """wall time of each epoch, its validation included"""
    valid_seconds: list[float] = field(default_factory=list)
    """the part of each epoch's time spent validating and keeping the best parameters"""
    best_epoch: int = -1
    """1-based epoch whose parameters the model holds at the end (0: the initial ones)"""
    best_ll: float = -math.inf
    interrupted: bool = False
    stopped_early: bool = False


def bits_per_dim(ll: float, num_vars: int) -> float:
    """Bits per dimension of a mean log-likelihood (nats per example)."""
    return -ll / (num_vars * LN2)


def check_data_fits(x: np.ndarray, circuit: Circuit, name: str) -> None:
    """Refuse data that does not fit ``circuit``: wrong width, values outside a variable's
    categories, non-integer values of a discrete variable.

    Raises:
        DataError: naming ``name`` and the (1-based) row and column.
    """
    if x.ndim != 2 or x.shape[1] != circuit.num_vars:
        width = x.shape[1] if x.ndim == 2 else x.ndim
        raise DataError(f"{name}: row 1: {width} columns, but the circuit has "
                        f"{circuit.num_vars} variables")
    cards = circuit.var_cards()
    card = np.array([np.inf if cards.get(v) is None else cards[v] for v in range(x.shape[1])])
    discrete = np.isfinite(card)
    xf = x.astype(np.float64, copy=False)
    seen = ~np.isnan(xf) & (xf != -1)
    with np.errstate(invalid="ignore"):
        bad = seen & discrete[None, :] & ((xf != np.floor(xf)) | (xf < 0) | (xf >= card[None, :]))
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        v = xf[r, c]
        shown = int(v) if v == np.floor(v) else float(v)
        raise DataError(f"{name}: row {r + 1}, column {c + 1}: value {shown} is outside "
                        f"0..{int(card[c]) - 1}, the values of variable {c}")


def evaluate(model: Any, x: np.ndarray, batch_size: int = 2048,
             stop: Callable[[], bool] | None = None) -> float:
    """Mean log-likelihood of ``x`` under ``model`` (no flows are accumulated).

    Raises:
        Stopped: ``stop()`` was true after a batch.
    """
    import torch

    if len(x) == 0:
        return math.nan
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])).to(model.device)
            total += float(model(xb).double().sum())
            if stop is not None and stop():
                raise Stopped
    return total / len(x)


def _snapshot(model: Any) -> dict[str, Any]:
    """The model's state, copied to the host (a copy on the device would add the size of
    every parameter to the training's peak)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _make_optimizer(model: Any, cfg: TrainConfig, group: Any) -> Any:
    from pccc.optim import FullBatchEM, MiniBatchEM

    if cfg.em == "minibatch":
        return MiniBatchEM(model, step_size=cfg.step_size, pseudocount=cfg.pseudocount,
                           process_group=group)
    if cfg.em == "fullbatch":
        return FullBatchEM(model, pseudocount=cfg.pseudocount, process_group=group)
    raise ValueError(f"unknown EM variant {cfg.em!r} (minibatch or fullbatch)")


@dataclass
class _Ranks:
    """The processes training together: a ``torch.distributed`` group, or this one alone."""

    group: Any
    device: Any
    """where the collectives' small tensors live (the model's device)"""
    rank: int = 0
    sizes: list[int] = field(default_factory=list)
    """every rank's number of training rows"""

    @classmethod
    def of(cls, process_group: Any, device: Any, rows: int) -> _Ranks:
        from pccc import distributed

        group = distributed.group_of(process_group)
        r, k = distributed.rank(group), distributed.world_size(group)
        ranks = cls(group, device, r)
        ranks.sizes = [int(v) for v in ranks.sum([rows if i == r else 0 for i in range(k)])]
        return ranks

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks."""
        from pccc.distributed import all_reduce_sum

        return all_reduce_sum(values, self.group, self.device)

    def from_root(self, values: list[float]) -> list[float]:
        """Rank 0's values on every rank."""
        from pccc.distributed import broadcast_values

        return broadcast_values(values, self.group, 0, self.device)

    def batches(self, batch_size: int) -> int:
        """Batches per epoch on every rank: those of the largest part of the data."""
        return -(-max(self.sizes) // batch_size)


def _epoch(model: Any, opt: Any, x: Any, cfg: TrainConfig, rng: np.random.Generator,
           label: str, ranks: _Ranks | None = None) -> float:
    """One pass over the shuffled training data; returns the mean train log-likelihood (over
    every rank's rows). Every rank takes as many steps; a rank out of rows takes its steps
    with empty batches."""
    import torch
    from tqdm import tqdm

    ranks = ranks or _Ranks(None, None, sizes=[len(x)])
    order = torch.from_numpy(rng.permutation(len(x)))
    starts = range(0, ranks.batches(cfg.batch_size) * cfg.batch_size, cfg.batch_size)
    bar = tqdm(starts, desc=label, unit="batch", leave=False,
               disable=not cfg.progress or ranks.rank != 0, dynamic_ncols=True)
    total, seen, many = 0.0, 0, ranks.group is not None
    for s in bar:
        xb = x[order[s:s + cfg.batch_size]]
        part = 0.0
        if len(xb):
            ll = model(xb)
            ll.sum().backward()
            part = float(ll.detach().double().sum())
        if cfg.em == "minibatch":
            opt.step()
        stop = cfg.stop is not None and cfg.stop()
        rows = float(len(xb))
        if many:  # (one collective: the bar's numbers and the ranks' stop)
            part, rows, stops = ranks.sum([part, rows, float(stop)])
            stop = stops > 0
        total, seen = total + part, seen + int(rows)
        bar.set_postfix(ll=f"{total / max(seen, 1):.3f}")
        if stop:
            bar.close()
            raise Stopped
    if cfg.em == "fullbatch":
        opt.step()
    bar.close()
    return total / sum(ranks.sizes) if sum(ranks.sizes) else math.nan


def _validate(model: Any, valid_x: np.ndarray | None, fallback: float, cfg: TrainConfig,
              ranks: _Ranks, deadline: float | None = None) -> tuple[float, bool]:
    """The validation log-likelihood (``fallback`` without validation data) and whether the
    time is up (``time.perf_counter()`` past ``deadline``), both rank 0's on every rank.

    Raises:
        Stopped: ``stop()`` was true during the evaluation.
    """
    va, stop = fallback, False
    if ranks.rank == 0 and valid_x is not None:
        try:
            va = evaluate(model, valid_x, cfg.eval_batch_size, cfg.stop)
        except Stopped:
            stop = True
    over = deadline is not None and time.perf_counter() > deadline
    if ranks.group is not None:
        va, flags = ranks.from_root([va, float(stop) + 2.0 * over])
        stop, over = bool(int(flags) & 1), bool(int(flags) & 2)
    if stop:
        raise Stopped
    return va, over


def train(model: Any, train_x: np.ndarray, valid_x: np.ndarray | None, cfg: TrainConfig,
          on_epoch: Callable[[int, History], None] | None = None, *,
          process_group: Any = None) -> History:
    """Train ``model`` in place with EM; it ends holding the best parameters seen.

    In a ``torch.distributed`` process group (``process_group``, or the default group once
    initialized) every rank calls :func:`train` with the same model and its own part of the
    training data (:func:`pccc.distributed.shard`): each EM step sums the statistics of the
    ranks' batches; an epoch takes as many steps on every rank (the largest part's batches);
    validation runs on rank 0 (``valid_x`` of the other ranks is not read) and its result
    reaches every rank, so that all stop together and hold the same parameters; rank 0 shows
    the progress bar. A ``stop`` request on any rank stops every rank after that batch.

    Args:
        model: a compiled circuit (``pccc.compile``).
        train_x: training data ``[N, V]`` (in a process group: this rank's rows).
        valid_x: validation data for early stopping (None: the training log-likelihood).
        cfg: the options.
        on_epoch: called after each epoch with the 1-based epoch and the history so far.
        process_group: the ``torch.distributed`` group to train in (None: the default group
            when one is initialized, else this process alone).

    Returns:
        the :class:`History` (the same on every rank); ``interrupted`` is set when Ctrl-C
        (or ``stop``) stopped it.
    """
    import torch

    hist = History()
    ranks = _Ranks.of(process_group, model.device, len(train_x))
    rng = np.random.default_rng(cfg.seed if ranks.rank == 0 else [cfg.seed, ranks.rank])
    xt = torch.from_numpy(np.ascontiguousarray(train_x)).to(model.device)
    opt = _make_optimizer(model, cfg, ranks.group)
    grads = getattr(model, "param_grads", None)
    if grads is not None:  # EM reads flows: a backend that can skip the gradients does
        model.param_grads = False
    best = _snapshot(model)
    hist.best_epoch = 0
    try:
        hist.best_ll, _ = _validate(model, valid_x, -math.inf, cfg, ranks)
        _epochs(model, opt, xt, valid_x, cfg, rng, ranks, hist, on_epoch, best)
    except (KeyboardInterrupt, Stopped):
        hist.interrupted = True
    opt.zero_flows()
    model.load_state_dict(best)
    if grads is not None:
        model.param_grads = grads
    return hist


def _epochs(model: Any, opt: Any, xt: Any, valid_x: np.ndarray | None, cfg: TrainConfig,
            rng: np.random.Generator, ranks: _Ranks, hist: History,
            on_epoch: Callable[[int, History], None] | None, best: dict[str, Any]) -> None:
    """The epochs of :func:`train`; ``best`` holds the best epoch's parameters."""
    deadline = None if cfg.max_seconds is None else time.perf_counter() + cfg.max_seconds
    for ep in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        tr = _epoch(model, opt, xt, cfg, rng, f"epoch {ep}/{cfg.epochs}", ranks)
        t1 = time.perf_counter()
        va, over = _validate(model, valid_x, tr, cfg, ranks, deadline)
        hist.train_ll.append(tr)
        hist.valid_ll.append(va)
        if va > hist.best_ll:
            hist.best_ll, hist.best_epoch = va, ep
            best.clear()
            best.update(_snapshot(model))
        t2 = time.perf_counter()
        hist.seconds.append(t2 - t0)
        hist.valid_seconds.append(t2 - t1)
        if on_epoch is not None:
            on_epoch(ep, hist)
        if over or (cfg.patience and ep - hist.best_epoch >= cfg.patience):
            hist.stopped_early = True
            break


def plot_curves(hist: History, path: str, *, title: str = "", num_vars: int | None = None
                ) -> None:
    """Write a PNG of the train and validation curves (bits per dimension when
    ``num_vars`` is given, else log-likelihood)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def conv(v: list[float]) -> list[float]:
        return [bits_per_dim(a, num_vars) for a in v] if num_vars else v

    epochs = list(range(1, len(hist.train_ll) + 1))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, conv(hist.train_ll), label="train")
    ax.plot(epochs, conv(hist.valid_ll), label="validation")
    if hist.best_epoch > 0:
        ax.axvline(hist.best_epoch, color="grey", linestyle=":", label="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per dimension" if num_vars else "log-likelihood (nats)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    from pccc.files import atomic_write

    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
