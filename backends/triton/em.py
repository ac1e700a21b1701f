"""EM for the Triton backend: sum weights by the generated EM kernels, inputs by the torch
backend's closed-form updates on the statistics of :mod:`.inputs`."""

from __future__ import annotations

import torch

from pccc.backends.triton.inputs import em_stats


def _input_update(dist: str, native, stats, step: float, pseudocount: float):
    from pccc.backends.torch.inputs import em_update  # the torch backend's closed forms

    return em_update(dist, native, stats, step, pseudocount)


@torch.no_grad()
def em_step(model, step_size: float, pseudocount: float) -> None:
    """One EM step from the flows of ``model``'s last backward pass (``step_size`` 1: full)."""
    if model.last_param_grad is None:
        raise RuntimeError("EM step without flows: run forward and backward first")
    norm = model.last_norm
    model.dp.em_sums(model.params.data, model.last_param_grad, norm, step_size, pseudocount)
    theta = model.input_params.data
    counts = model.last_counts * norm
    for ly, ns in zip(model.plan.input_layers, model.last_nstats):
        if ly.dist == "indicator":
            continue
        uidx, stats = em_stats(ly, theta, counts, ns * norm)
        new = _input_update(ly.dist, theta[uidx], stats, step_size, pseudocount)
        theta[uidx.reshape(-1)] = new.reshape(-1).to(theta.dtype)
    model.last_param_grad = None
