"""The executor interface: what a backend implements to run a :class:`CompiledCircuit`.

:class:`~pccc.backends.module.CompiledCircuit` is one ``torch.nn.Module`` for every backend:
it owns the parameters (``sum_logits``, ``input_raw`` and their buffers), the EM statistics'
bookkeeping, the input layers' tables, saving and the autograd glue of external inputs. It
holds an executor (``model.executor``), which computes: it makes the parameters' values from
the plan, runs the forward and backward passes, the EM step, and keeps whatever copies or
tables its kernels need. The torch backend's executor is
:class:`~pccc.backends.torch.executor.TorchExecutor`, the Triton backend's
:class:`~pccc.backends.triton.compiled.TritonExecutor`.

Every method takes the module ``m`` it serves (an executor holds no reference to it). An
executor that runs work the module's tensors depend on in the background (the Triton one's EM
step on a stream of its own) orders every reader after it through :meth:`Executor.settle`,
which the module calls before it hands out a parameter or buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from pccc.backends.reference.evaluate import Semiring
from pccc.ir.plan import KernelPlan

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit


class Executor:
    """Base of the backends' executors: the interface, with the defaults that fit a backend
    computing from the module's own parameters."""

    #: the backend's name (``model.backend_name`` starts as it)
    name = "?"
    #: the module's torch layers (index tables) exist: the torch backend's decoding reads them
    torch_layers = False
    #: the backend's options value (``model.options``; None: the backend takes none)
    options: Any = None

    # ---------------------------------------------------------------- making
    def init_params(self, m: CompiledCircuit, plan: KernelPlan) -> None:
        """Make the module's parameters and buffers from the plan's values (``sum_logits``,
        ``sum_norm``, ``group_size``, ``sum_flows``; the input ones through
        ``m.init_inputs(plan)``, which calls :meth:`input_values`)."""
        raise NotImplementedError

    def input_values(self, m: CompiledCircuit, plan: KernelPlan) -> tuple[Tensor, Tensor]:
        """``input_raw`` ``[max(q, 1)]`` and ``input_shift`` ``[max(nodes, 1)]`` from the
        plan's native input parameters."""
        raise NotImplementedError

    def artifacts(self, m: CompiledCircuit) -> dict[str, str]:
        """Text of the executor's stages (``model.artifacts`` adds the plan's summary)."""
        return {}

    # --------------------------------------------------------------- passes
    def forward(self, m: CompiledCircuit, x: Tensor, missing: Tensor | None) -> Tensor:
        """``log p(x)`` with autograd (its backward computes gradients and EM flows)."""
        raise NotImplementedError

    def run_forward(self, m: CompiledCircuit, logw: Tensor, in_vals: list[Tensor],
                    keep: list[Tensor] | None = None, semiring: Semiring = "sum") -> Tensor:
        """The node buffer ``[slots, batch]`` for input log-values fed from outside (no
        autograd; see :meth:`CompiledCircuit.run_forward`)."""
        raise NotImplementedError

    def run_backward(self, m: CompiledCircuit, node: Tensor, logw: Tensor, grad: Tensor, *,
                     track_em: bool, elems: list[Tensor] | None = None,
                     root_flow: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Node flows and parameter flows of :meth:`run_forward`'s node buffer (see
        :meth:`CompiledCircuit.run_backward`)."""
        raise NotImplementedError

    # ----------------------------------------------------------- parameters
    def log_weights(self, m: CompiledCircuit) -> Tensor:
        """Flat log sum weights (differentiable; padding ``-inf``)."""
        raise NotImplementedError

    def group_sums(self, m: CompiledCircuit, x: Tensor) -> Tensor:
        """``[num_groups + 1]`` per-group sums of flat weight values (last: padding)."""
        raise NotImplementedError

    def set_weights(self, m: CompiledCircuit, w: Tensor) -> None:
        """Write linear sum weights (flat, padding ignored); logits stay consistent."""
        raise NotImplementedError

    def current_weights(self, m: CompiledCircuit) -> np.ndarray:
        """The flat linear sum weights the executor computes with (float64, host)."""
        raise NotImplementedError

    def own_inputs(self, m: CompiledCircuit, native: np.ndarray) -> None:
        """Write into ``native`` (the plan's layout) the input parameters that the executor
        computes with from copies of its own (default: none)."""

    def exact_state(self, m: CompiledCircuit) -> dict[str, Tensor]:
        """What the executor adds to the module's exact state (default: nothing)."""
        return {}

    def load_exact_state(self, m: CompiledCircuit, state: dict[str, Tensor], loaded: bool
                         ) -> bool:
        """Take an exact state's own entries; ``loaded``: the module's entries were set.
        Returns whether the state was taken."""
        return loaded

    def params_changed(self, m: CompiledCircuit) -> None:
        """Re-read the parameters before the next pass (after writes through ``.data``)."""

    # ------------------------------------------------------------------- EM
    def em_step(self, m: CompiledCircuit, step_size: float, pseudocount: float) -> None:
        """One EM step from the accumulated statistics; then they are zeroed."""
        raise NotImplementedError

    def em_statistics(self, m: CompiledCircuit) -> list[Tensor]:
        """The statistics :meth:`em_step` reads (edits in place reach it)."""
        raise NotImplementedError

    def zero_flows(self, m: CompiledCircuit) -> None:
        """Forget the EM statistics accumulated since the last EM step."""
        raise NotImplementedError

    def settle(self, m: CompiledCircuit, deferred: bool = False) -> None:
        """Order the current stream after any work in flight that writes the module's
        parameters or buffers; ``deferred``: also write what that work left to its first
        reader (the Triton executor's zeroed EM flows). Default: nothing runs in flight."""

    def materialize(self, m: CompiledCircuit) -> None:
        """Write any parameter the executor keeps no copy of now, before a reader sees it
        (the Triton executor's sum logits in EM-only training). Default: none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


__all__ = ["Executor"]
