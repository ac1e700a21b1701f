"""``binomial``: the number of successes in ``total`` trials of probability ``p``."""

from __future__ import annotations

import math

import numpy as np

from pccc.ir.dists.base import Distribution, int_values, register


@register
class Binomial(Distribution):
    """``P(X = k) = C(total, k) p^k (1-p)^(total-k)`` with ``p = params[i]``."""

    name = "binomial"
    attr_types = {"total": int}

    @classmethod
    def param_shape(cls, n, attrs):
        return (n,)

    @classmethod
    def cardinality(cls, attrs):
        return int(attrs["total"]) + 1

    @classmethod
    def check_params(cls, params, attrs):
        if not np.all(np.isfinite(params)) or np.any((params < 0) | (params > 1)):
            return "binomial probabilities must lie in [0, 1]"
        return None

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        assert params is not None
        total = int(attrs["total"])
        xi = int_values(x)
        k = xi[:, None].astype(np.float64)
        # log C(total, v) for the values present only (not a table of total + 1)
        seen, at = np.unique(xi, return_inverse=True)
        logc = np.array([math.lgamma(total + 1) - math.lgamma(v + 1) - math.lgamma(total - v + 1)
                         for v in seen.tolist()])[at.reshape(-1)][:, None]
        p = params[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(k > 0, k * np.log(p), 0.0)
            b = np.where(total - k > 0, (total - k) * np.log1p(-p), 0.0)
        return logc + a + b

    @classmethod
    def default_params(cls, n, attrs, rng):
        if rng is None:
            return np.full((n,), 0.5)
        return rng.uniform(0.05, 0.95, size=n)
