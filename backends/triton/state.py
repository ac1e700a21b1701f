"""The exact state of a Triton module: what a ``.pccm`` file keeps so that the loaded module
computes bit for bit what the saved one did.

The kernels compute from their own copies of the parameters: the linear sum weights ``_w``,
the native parameters ``_theta`` of non-categorical input layers, and per categorical node the
constant ``c`` of ``log theta = raw + c`` (``_cnorm``). An EM step writes these directly, beside
the torch backend's parametrization (``sum_logits``, ``sum_norm``, ``input_raw``,
``input_shift``); recomputed from that parametrization they would differ in the last bits.
So the plan of a saved module holds ``_w`` and ``_theta`` themselves (float32 values in
float64: exact), which a module built from the plan starts from, and the exact state adds the
constants ``c`` (``kernels.cnorm``, all categorical layers' in a row); a module given that
state takes its copies as in step with its parametrization.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: the exact state's entry for the categorical layers' constants (its presence also says that
#: the plan's values are the kernels' own copies)
CNORM = "kernels.cnorm"


class KernelState:
    """Mixin of :class:`~pccc.backends.triton.compiled.TritonCompiledCircuit` (before the torch
    backend's module in its bases): the exact state and the current values of its kernels."""

    plan: Any
    _w: Tensor
    _theta: Tensor
    _cnorm: list[Tensor]
    _synced: Any
    sync_params: Any
    params_changed: Any
    _param_key: Any

    @torch.no_grad()
    def current_weights(self) -> np.ndarray:
        """The kernels' linear sum weights (float64, on the host)."""
        self.sync_params()  # (refreshed first if the parametrization changed since)
        return self._w[: len(self.plan.params)].double().cpu().numpy()

    @torch.no_grad()
    def current_inputs(self) -> np.ndarray:
        """The native input parameters; those of non-categorical layers are the kernels'."""
        native: np.ndarray = super().current_inputs()  # type: ignore[misc]
        self.sync_params()
        theta = None
        for ly in self.plan.input_layers:
            if ly.param_size and ly.dist != "categorical":
                theta = self._theta.double().cpu().numpy() if theta is None else theta
                pidx = ly.param_start[:, None] + np.arange(ly.param_size)[None, :]
                native[pidx] = theta[pidx]
        return native

    def _categorical(self) -> list[int]:
        return [i for i, ly in enumerate(self.plan.input_layers)
                if ly.param_size and ly.dist == "categorical"]

    def exact_state(self) -> dict[str, Tensor]:
        """The torch backend's exact state and the categorical layers' constants ``c``."""
        state: dict[str, Tensor] = super().exact_state()  # type: ignore[misc]
        self.sync_params()
        cs = [self._cnorm[i].detach() for i in self._categorical()]
        state[CNORM] = torch.cat(cs) if cs else torch.zeros(0, device=self._w.device)
        return state

    def load_exact_state(self, state: dict[str, Tensor]) -> bool:
        """Set an exact state. With ``kernels.cnorm`` (a Triton module's, whose plan held the
        kernels' copies) the copies are taken as they are; else they are recomputed from the
        parametrization before the next pass."""
        loaded: bool = super().load_exact_state(state)  # type: ignore[misc]
        cats = self._categorical()
        cnorm = state.get(CNORM)
        sizes = [self._cnorm[i].numel() for i in cats]
        if not loaded or cnorm is None or cnorm.numel() != sum(sizes):
            self.params_changed()
            return loaded
        with torch.no_grad():
            for i, part in zip(cats, torch.split(cnorm, sizes)):
                self._cnorm[i].copy_(part)
        self._synced = self._param_key()
        return True
