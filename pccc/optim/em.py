"""Mini-batch and full-batch EM over a :class:`~pccc.backends.torch.CompiledCircuit`."""

from __future__ import annotations

from typing import Any


class MiniBatchEM:
    """One EM step per :meth:`step` from the flows accumulated since the previous step.

    Each sum node's weights become ``(1 - eta) * w + eta * (F_c + alpha / K) / (sum_c F_c +
    alpha)``, with ``F`` the parameter flows (expected edge counts) summed over the batches
    since the last step and ``K`` the node's number of children; input distributions update
    from their sufficient statistics the same way (see ``docs/usage.md``).

    Args:
        model: a compiled circuit (any backend built on the torch backend's module).
        step_size: ``eta`` in ``(0, 1]``.
        pseudocount: ``alpha >= 0`` (Laplace smoothing spread over the children).
    """

    def __init__(self, model: Any, step_size: float = 0.1, pseudocount: float = 0.1):
        if not 0.0 < step_size <= 1.0:
            raise ValueError(f"step_size must lie in (0, 1], got {step_size}")
        if pseudocount < 0.0:
            raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
        for name in ("em_step", "zero_flows"):
            if not hasattr(model, name):
                raise TypeError(f"{type(model).__name__} has no {name}(): not a compiled circuit")
        self.model = model
        self.step_size = float(step_size)
        self.pseudocount = float(pseudocount)

    def step(self) -> None:
        """Apply one EM update and reset the accumulated flows."""
        self.model.em_step(self.step_size, self.pseudocount)

    def zero_flows(self) -> None:
        """Discard the flows accumulated so far without updating."""
        self.model.zero_flows()


class FullBatchEM(MiniBatchEM):
    """EM with ``step_size = 1``: accumulate flows over a whole epoch, then :meth:`step`."""

    def __init__(self, model: Any, pseudocount: float = 0.1):
        super().__init__(model, step_size=1.0, pseudocount=pseudocount)
