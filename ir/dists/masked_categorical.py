"""``masked_categorical``: a categorical over the values ``0..card-1`` that a mask allows.

``mask`` holds ``card`` entries (one allowed set for every node of the vector) or ``n * card``
(row ``i`` for node ``i``), each 1 (allowed) or 0 (never taken). A node's parameters are the
whole table of ``card`` probabilities, 0 at the values its mask leaves out. Masked-out values
have probability exactly 0 (PyJuice's ``MaskedCategorical`` gives them ``1e-10``), EM spreads
the pseudocount over the allowed values only, and a masked-out value stays at 0 under EM and
gradient steps alike.

An L3 input layer holds whole vectors with the same attributes back to back, so node ``j`` of
a layer takes mask row ``j mod rows``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccc.ir.dists.base import Distribution, finite_nonnegative, int_values, register


def mask_rows(attrs: dict[str, Any], n: int) -> np.ndarray:
    """The allowed values of each of ``n`` nodes: bool ``[n, card]`` (row ``j mod rows``)."""
    card = int(attrs["card"])
    rows = np.asarray(attrs["mask"], dtype=np.int64).reshape(-1, card) != 0
    return rows[np.arange(n) % len(rows)]


@register
class MaskedCategorical(Distribution):
    """``P(X = k) = params[i, k]`` where node ``i``'s mask allows ``k``, else 0."""

    name = "masked_categorical"
    attr_types = {"card": int, "mask": tuple}

    @classmethod
    def param_shape(cls, n, attrs):
        return (n, int(attrs["card"]))

    @classmethod
    def cardinality(cls, attrs):
        return int(attrs["card"])

    @classmethod
    def check_attrs(cls, n, attrs):
        msg = super().check_attrs(n, attrs)
        if msg:
            return msg
        card, mask = attrs["card"], attrs["mask"]
        if card < 1:
            return f"masked_categorical: card={card}, at least 1"
        if len(mask) not in (card, n * card):
            return (f"masked_categorical: a mask of {len(mask)} entries; {card} (one row for "
                    f"the vector) or {n * card} (one row per node) expected")
        if any(v not in (0, 1) for v in mask):
            return "masked_categorical: mask entries must be 0 or 1"
        rows = np.asarray(mask, dtype=np.int64).reshape(-1, card)
        empty = np.flatnonzero(rows.sum(axis=1) == 0)
        if len(empty):
            return f"masked_categorical: mask row {int(empty[0])} allows no value"
        return None

    @classmethod
    def check_layer_attrs(cls, n, attrs):
        card, mask = attrs.get("card"), attrs.get("mask")
        if isinstance(card, int) and card > 0 and isinstance(mask, tuple) and mask:
            rows = len(mask) // card
            if rows and len(mask) % card == 0 and n % rows == 0:
                return cls.check_attrs(rows, attrs)
            return (f"masked_categorical: a mask of {len(mask)} entries for a layer of {n} "
                    f"nodes over {card} values")
        return cls.check_attrs(n, attrs)

    @classmethod
    def node_attrs(cls, attrs, i):
        card, mask = int(attrs["card"]), attrs["mask"]
        rows = len(mask) // card
        if rows == 1:
            return attrs
        at = (i % rows) * card
        return dict(attrs, mask=tuple(mask[at: at + card]))

    @classmethod
    def check_params(cls, params, attrs):
        params = np.asarray(params)
        if not finite_nonnegative(params):
            return "masked_categorical probabilities must be finite and >= 0"
        if np.any(params[~mask_rows(attrs, params.shape[0])] != 0):
            return "masked_categorical probabilities must be 0 where the mask is 0"
        return None

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        assert params is not None
        with np.errstate(divide="ignore"):
            logp = np.where(mask_rows(attrs, n), np.log(params), -np.inf)  # [n, K]
        return logp[:, int_values(x)].T

    @classmethod
    def default_params(cls, n, attrs, rng):
        allowed = mask_rows(attrs, n)
        p = allowed * (1.0 if rng is None else rng.random(allowed.shape) + 0.05)
        return p / p.sum(axis=1, keepdims=True)
