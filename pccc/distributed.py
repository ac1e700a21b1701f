"""Data-parallel training on ``torch.distributed``: process groups, sums of EM statistics,
shards of data.

pccc launches no processes of its own: ``torchrun`` (or any launcher) starts them and
``torch.distributed.init_process_group`` joins them. Within a process group every rank holds
the same circuit, runs forward and backward passes on its own examples, and sums the EM
statistics over the ranks before each EM step (:class:`pccc.optim.MiniBatchEM` does it through
:func:`all_reduce_statistics`), so that ``N`` ranks with ``b`` examples each take the step one
process takes on the union of their ``N * b`` examples.

``process_group`` arguments take a ``torch.distributed.ProcessGroup``, or None for the default
group when one is initialized (else the process trains alone).

Example::

    torch.distributed.init_process_group("gloo")        # under torchrun
    x = pccc.distributed.shard(data)                    # this rank's rows
    opt = pccc.optim.MiniBatchEM(model)                 # sums statistics over the ranks
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pccc.ir.errors import PcccError

if TYPE_CHECKING:
    import numpy as np


def group_of(process_group: Any = None) -> Any:
    """The process group to reduce over: ``process_group``, else the default group when
    ``torch.distributed`` has one initialized, else None (one process)."""
    if process_group is not None:
        return process_group
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.group.WORLD
    return None


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (see :func:`group_of`; 0 alone)."""
    import torch.distributed

    group = group_of(group)
    return 0 if group is None else torch.distributed.get_rank(group)


def world_size(group: Any = None) -> int:
    """The number of processes in ``group`` (see :func:`group_of`; 1 alone)."""
    import torch.distributed

    group = group_of(group)
    return 1 if group is None else torch.distributed.get_world_size(group)


def all_reduce_statistics(model: Any, group: Any) -> None:
    """Sum ``model``'s EM statistics (``model.em_statistics()``) over the ranks of ``group``,
    in place; nothing alone (``group`` None). Every rank of the group calls it."""
    import torch.distributed

    if group is None:
        return
    for t in model.em_statistics():
        if t.numel():
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM, group=group)


def all_reduce_sum(values: list[float], group: Any, device: Any = None) -> list[float]:
    """The sums of a few numbers over the ranks of ``group`` (float64; the values alone when
    ``group`` is None). ``device``: where the collective runs (a CUDA device for NCCL)."""
    import torch.distributed

    if group is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM, group=group)
    return [float(v) for v in t.cpu()]


def broadcast_values(values: list[float], group: Any, src: int = 0, device: Any = None
                     ) -> list[float]:
    """Rank ``src``'s numbers on every rank of ``group`` (float64; the values alone when
    ``group`` is None). ``src`` is a rank in ``group``."""
    import torch.distributed

    if group is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=torch.distributed.get_global_rank(group, src),
                                group=group)
    return [float(v) for v in t.cpu()]


def broadcast_module(model: Any, group: Any, src: int = 0) -> None:
    """Rank ``src``'s parameters and persistent buffers (its ``state_dict``) into ``model`` on
    every rank of ``group``, in place; nothing alone.

    Raises:
        PcccError: the ranks' modules differ in their tensors' names or shapes.
    """
    import torch.distributed

    if group is None:
        return
    state = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    shapes = [(k, tuple(v.shape)) for k, v in sorted(state.items())]
    seen: list[Any] = [None] * world_size(group)
    torch.distributed.all_gather_object(seen, shapes, group=group)
    for r, other in enumerate(seen):
        if other != shapes:
            raise PcccError(f"rank {r} holds a different circuit than rank {rank(group)} "
                            "(parameter names or shapes differ): every rank must build the "
                            "same circuit")
    root = torch.distributed.get_global_rank(group, src)
    with torch.no_grad():
        for _, v in sorted(state.items()):
            torch.distributed.broadcast(v, src=root, group=group)
    changed = getattr(model, "params_changed", None)
    if changed is not None:  # (a backend keeping copies of its parameters refreshes them)
        changed()


def split_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """``(start, stop)``: part ``rank`` of ``n`` rows cut into ``size`` contiguous parts that
    differ in length by at most one row (the longer ones first)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard(x: np.ndarray, group: Any = None) -> np.ndarray:
    """This rank's contiguous rows of ``x`` (:func:`split_range` by rank and world size; all
    of them alone)."""
    start, stop = split_range(len(x), rank(group), world_size(group))
    return x[start:stop]
