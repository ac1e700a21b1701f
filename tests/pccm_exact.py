"""Shared by the ``.pccm`` exactness tests of the torch and Triton backends: train a few EM
steps, save, load, and compare the log-likelihoods bit for bit, then after one more EM step
on both modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import pccc
from pccc.optim import MiniBatchEM


def _em(model: Any, x: torch.Tensor, steps: int) -> None:
    opt = MiniBatchEM(model, step_size=0.6, pseudocount=0.1)
    for _ in range(steps):
        model(x).sum().backward()
        opt.step()


def check_exact_roundtrip(circuit: Any, x: np.ndarray, backend: str, device: str, steps: int,
                          folder: Path) -> None:
    """``torch.equal`` of a float32 module's log-likelihoods before ``pccc.save`` and after
    ``pccc.load_module``, and of the two modules' after one more EM step each."""
    model = pccc.compile(circuit, backend=backend, device=device)
    xt = torch.as_tensor(x, device=device)
    _em(model, xt, steps)
    before = model(xt).detach()
    path = folder / "m.pccm"
    pccc.save(model, path)
    back = pccc.load_module(path, device=device)
    assert back.dtype == torch.float32 and back.backend_name == backend
    after = back(xt).detach()
    assert torch.equal(after, before), (after - before).abs().max()
    for m in (model, back):
        _em(m, xt, 1)
    assert torch.equal(back(xt).detach(), model(xt).detach())
