"""Sum logits left to their first reader in EM-only training (option ``lazy_logits``).

The kernels compute from their own linear weights ``_w``; the module's ``sum_logits`` (an
``nn.Parameter``: what autograd and ``state_dict`` see) is ``log w`` of them. With parameter
gradients off (``param_grads = False``) no pass reads the logits, so an EM step updates ``_w``
alone and the logits' storage is given back (a weight-sized tensor: 36 MiB on MNIST's
HCLT-128, 145 MiB on HCLT-256, a third of the sum weights' memory). The parameter keeps its
identity with an empty tensor in it; its first reader (``model.sum_logits``, ``state_dict``,
``named_parameters``, saving, a pass with gradients) gets ``log w`` back, written by the
kernel the EM step would have used (``logits_of_weights``: the same ``log`` on the same
values, so the logits are the EM step's to the bit). Padding entries are 0, as every module
makes them; a module whose padding logits are not 0 keeps its logits.

The functions are the :class:`~pccc.backends.triton.compiled.TritonExecutor`'s methods
(``ex``: the executor, ``m``: its module).
"""

from __future__ import annotations

from typing import Any

import torch


def lazy(ex: Any, m: Any) -> bool:
    """Whether the next EM step may leave the logits to their first reader."""
    return bool(ex.options.lazy_logits and not m.param_grads)


def for_em_step(ex: Any, m: Any) -> bool:
    """Before an EM step (its stream ordered after the steps before it): give the logits'
    storage back where the step may leave them to their first reader, else put them back;
    returns whether the step leaves them."""
    if lazy(ex, m):
        release(ex, m)
    else:
        materialize(ex, m)
    return ex._logits_size is not None


def release(ex: Any, m: Any) -> None:
    """Give the logits' storage back (after the EM steps that wrote them: the caller has
    ordered the current stream after them), where their padding entries are 0."""
    logits = m._parameters["sum_logits"]
    if ex._logits_size is not None:
        return
    if ex.dp.padding_nonzero(logits.detach()):  # (a kernel: no weight-sized temporaries)
        return
    synced = ex._synced == ex._param_key(m)
    ex._logits_size = logits.numel()
    logits.data = torch.empty(0, dtype=logits.dtype, device=logits.device)
    if synced:
        ex._synced = ex._param_key(m)


def materialize(ex: Any, m: Any) -> None:
    """Give the logits back to their reader: ``log w`` of the kernels' weights (after the EM
    step in flight), 0 in the padding."""
    if ex._logits_size is None:
        return
    ex.em.wait()
    logits = m._parameters["sum_logits"]
    synced = ex._synced == ex._param_key(m)
    full = torch.zeros(ex._logits_size, dtype=logits.dtype, device=logits.device)
    with torch.no_grad():
        ex.dp.logits_of_weights(ex._w, full)
    logits.data = full
    ex._logits_size = None
    if synced:
        ex._synced = ex._param_key(m)
