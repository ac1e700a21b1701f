"""The exact state of a Triton module: what a ``.pccm`` file keeps so that the loaded module
computes bit for bit what the saved one did.

The kernels compute from their own copies of the parameters: the linear sum weights ``_w``,
the native parameters ``_theta`` of non-categorical input layers, and per categorical node the
constant ``c`` of ``log theta = raw + c`` (``_cnorm``). An EM step writes these directly, beside
the module's parametrization (``sum_logits``, ``sum_norm``, ``input_raw``, ``input_shift``);
recomputed from that parametrization they would differ in the last bits. So the plan of a
saved module holds ``_w`` and ``_theta`` themselves (float32 values in float64: exact), which a
module built from the plan starts from, and the exact state adds the constants ``c``
(``kernels.cnorm``, all categorical layers' in a row); a module given that state takes its
copies as in step with its parametrization.

The functions here are the :class:`~pccc.backends.triton.compiled.TritonExecutor`'s exact-state
methods (``ex``: the executor, ``m``: its module).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: the exact state's entry for the categorical layers' constants (its presence also says that
#: the plan's values are the kernels' own copies)
CNORM = "kernels.cnorm"


@torch.no_grad()
def current_weights(ex: Any, m: Any) -> np.ndarray:
    """The kernels' linear sum weights (float64, on the host)."""
    ex.sync_params(m)  # (refreshed first if the parametrization changed since)
    return ex._w[: len(m.plan.params)].double().cpu().numpy()


@torch.no_grad()
def own_inputs(ex: Any, m: Any, native: np.ndarray) -> None:
    """The kernels' native parameters of non-categorical layers, written into ``native``."""
    ex.sync_params(m)
    theta = None
    for ly in m.plan.input_layers:
        if ly.param_size and ly.dist != "categorical":
            theta = ex._theta.double().cpu().numpy() if theta is None else theta
            pidx = ly.param_start[:, None] + np.arange(ly.param_size)[None, :]
            native[pidx] = theta[pidx]


def _categorical(m: Any) -> list[int]:
    return [i for i, ly in enumerate(m.plan.input_layers)
            if ly.param_size and ly.dist == "categorical"]


def exact_state(ex: Any, m: Any) -> dict[str, Tensor]:
    """The categorical layers' constants ``c`` (the module adds its own entries)."""
    ex.sync_params(m)
    cs = [ex._cnorm[i].detach() for i in _categorical(m)]
    return {CNORM: torch.cat(cs) if cs else torch.zeros(0, device=ex._w.device)}


def load_exact_state(ex: Any, m: Any, state: dict[str, Tensor], loaded: bool) -> bool:
    """Take an exact state. With ``kernels.cnorm`` (a Triton module's, whose plan held the
    kernels' copies) the copies are taken as they are; else they are recomputed from the
    parametrization before the next pass. ``loaded``: the module's own entries were set."""
    cats = _categorical(m)
    cnorm = state.get(CNORM)
    sizes = [ex._cnorm[i].numel() for i in cats]
    if not loaded or cnorm is None or cnorm.numel() != sum(sizes):
        ex.params_changed(m)
        return loaded
    with torch.no_grad():
        for i, part in zip(cats, torch.split(cnorm, sizes)):
            ex._cnorm[i].copy_(part)
    ex._synced = ex._param_key(m)
    return True
