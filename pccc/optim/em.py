"""Mini-batch and full-batch EM over a :class:`~pccc.backends.torch.CompiledCircuit`, alone
or summing the EM statistics over the ranks of a ``torch.distributed`` process group."""

from __future__ import annotations

from typing import Any

from pccc import distributed


class MiniBatchEM:
    """One EM step per :meth:`step` from the flows accumulated since the previous step.

    Each sum node's weights become ``(1 - eta) * w + eta * (F_c + alpha / K) / (sum_c F_c +
    alpha)``, with ``F`` the parameter flows (expected edge counts) summed over the batches
    since the last step and ``K`` the node's number of children; input distributions update
    from their sufficient statistics the same way (see ``docs/usage.md``).

    In a process group (``process_group``, or the default group once
    ``torch.distributed.init_process_group`` has run) :meth:`step` first sums the statistics
    over the ranks, so every rank takes the step that one process takes on the union of the
    ranks' batches; every rank of the group calls :meth:`step` the same number of times.

    Args:
        model: a compiled circuit (any backend built on the torch backend's module).
        step_size: ``eta`` in ``(0, 1]``.
        pseudocount: ``alpha >= 0`` (Laplace smoothing spread over the children).
        process_group: the ``torch.distributed`` group to sum over (None: the default group
            when one is initialized, else none).
    """

    def __init__(self, model: Any, step_size: float = 0.1, pseudocount: float = 0.1, *,
                 process_group: Any = None):
        if not 0.0 < step_size <= 1.0:
            raise ValueError(f"step_size must lie in (0, 1], got {step_size}")
        if pseudocount < 0.0:
            raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
        for name in ("em_step", "zero_flows", "em_statistics"):
            if not hasattr(model, name):
                raise TypeError(f"{type(model).__name__} has no {name}(): not a compiled circuit")
        self.model = model
        self.step_size = float(step_size)
        self.pseudocount = float(pseudocount)
        self._group = process_group

    @property
    def process_group(self) -> Any:
        """The group :meth:`step` sums over (None: this process alone)."""
        return distributed.group_of(self._group)

    def step(self) -> None:
        """Apply one EM update (from the statistics summed over the process group, if any)
        and reset the accumulated flows."""
        distributed.all_reduce_statistics(self.model, self.process_group)
        self.model.em_step(self.step_size, self.pseudocount)

    def zero_flows(self) -> None:
        """Discard the flows accumulated so far without updating."""
        self.model.zero_flows()


class FullBatchEM(MiniBatchEM):
    """EM with ``step_size = 1``: accumulate flows over a whole epoch, then :meth:`step`
    (summed over the ranks of ``process_group`` as in :class:`MiniBatchEM`)."""

    def __init__(self, model: Any, pseudocount: float = 0.1, *, process_group: Any = None):
        super().__init__(model, step_size=1.0, pseudocount=pseudocount,
                         process_group=process_group)
