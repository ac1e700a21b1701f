"""The torch backend: index tables and batched tensor ops; runs on CPU and GPU.

``pccc.backends.registry.get("torch")(plan, device=..., dtype=...)`` returns a
:class:`~pccc.backends.module.CompiledCircuit` computed by a
:class:`~pccc.backends.torch.executor.TorchExecutor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pccc.backends import registry
from pccc.ir.plan import KernelPlan

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit


def build(plan: KernelPlan, *, device: Any = None, dtype: Any = None) -> CompiledCircuit:
    """The backend factory: a :class:`CompiledCircuit` for ``plan`` (no options); a
    distribution without a torch family (:mod:`.families`) is refused by name."""
    import torch

    from pccc.backends.module import CompiledCircuit
    from pccc.backends.torch import families  # noqa: F401  (registers the families)
    from pccc.backends.torch.executor import TorchExecutor
    from pccc.ir import dists

    dists.refuse_missing("torch", [ly.dist for ly in plan.input_layers],
                         dists.implemented("torch"))

    return CompiledCircuit(plan, device=device, dtype=dtype or torch.float32,
                           executor=TorchExecutor())


registry.register("torch", build)

__all__ = ["build"]
