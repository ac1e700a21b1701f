"""``masked_categorical`` on the torch backend: a categorical whose masked-out values are
``-inf`` before the softmax (raw ``log p``, as :mod:`.categorical`), whatever their raw
values; EM statistics are counts per value, and the EM step gives the pseudocount to the
allowed values only and 0 to the others."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.backends.torch.families.categorical import Categorical
from pccc.ir import dists
from pccc.ir.dists.masked_categorical import mask_rows


@lru_cache(maxsize=64)
def _allowed(card: int, mask: tuple[int, ...], n: int) -> np.ndarray:
    return mask_rows({"card": card, "mask": mask}, n)


def allowed(attrs: dict[str, Any], n: int, device: torch.device) -> Tensor:
    """bool ``[n, card]``: the values each of the ``n`` nodes may take."""
    rows = _allowed(int(attrs["card"]), tuple(attrs["mask"]), n)
    return torch.from_numpy(rows).to(device)


@dists.implements("torch", "masked_categorical")
class MaskedCategorical(Categorical):
    """Node ``j`` of a layer takes mask row ``j mod rows``."""

    @classmethod
    def _masked(cls, attrs: dict[str, Any], raw: Tensor) -> Tensor:
        keep = allowed(attrs, raw.shape[0], raw.device)
        return raw.masked_fill(~keep, -torch.inf)

    @classmethod
    def table(cls, attrs, raw):
        return torch.log_softmax(cls._masked(attrs, raw), dim=1)

    @classmethod
    def probs(cls, attrs, raw):
        return torch.softmax(cls._masked(attrs, raw), dim=1)

    @classmethod
    def em_update(cls, attrs, native, stats, eta, alpha, min_std):
        keep = allowed(attrs, native.shape[0], native.device)
        k = keep.sum(dim=1, keepdim=True).to(native.dtype)
        stats = torch.where(keep, stats, torch.zeros_like(stats))
        tot = stats.sum(1, keepdim=True)
        ok = (tot + alpha) > 0
        target = (stats + alpha / k) / torch.where(ok, tot + alpha, torch.ones_like(tot))
        new = torch.where(ok, (1 - eta) * native + eta * target, native)
        return torch.where(keep, new, torch.zeros_like(new))
