"""``categorical``: a table of probabilities over the values ``0..card-1``."""

from __future__ import annotations

import numpy as np

from pccc.ir.dists.base import Distribution, finite_nonnegative, int_values, register


@register
class Categorical(Distribution):
    """``P(X = k) = params[i, k]`` for ``k`` in ``0..card-1``."""

    name = "categorical"
    attr_types = {"card": int}

    @classmethod
    def param_shape(cls, n, attrs):
        return (n, int(attrs["card"]))

    @classmethod
    def cardinality(cls, attrs):
        return int(attrs["card"])

    @classmethod
    def check_params(cls, params, attrs):
        if not finite_nonnegative(np.asarray(params)):
            return "categorical probabilities must be finite and >= 0"
        return None

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        assert params is not None
        with np.errstate(divide="ignore"):
            logp = np.log(params)  # [n, K]
        return logp[:, int_values(x)].T

    @classmethod
    def default_params(cls, n, attrs, rng):
        k = int(attrs["card"])
        if rng is None:
            return np.full((n, k), 1.0 / k)
        p = rng.random((n, k)) + 0.05
        return p / p.sum(axis=1, keepdims=True)
