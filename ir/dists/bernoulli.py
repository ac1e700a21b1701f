"""``bernoulli``: a binary variable that is 1 with probability ``p``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from pccc.ir.dists.base import Distribution, int_values, register


@register
class Bernoulli(Distribution):
    """``P(X = 1) = params[i]``."""

    name = "bernoulli"
    attr_types: ClassVar[dict[str, type]] = {}

    @classmethod
    def param_shape(cls, n, attrs):
        return (n,)

    @classmethod
    def cardinality(cls, attrs):
        return 2

    @classmethod
    def check_params(cls, params, attrs):
        if not np.all(np.isfinite(params)) or np.any((params < 0) | (params > 1)):
            return "bernoulli probabilities must lie in [0, 1]"
        return None

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        assert params is not None
        xi = int_values(x)[:, None]
        with np.errstate(divide="ignore"):
            return np.where(xi == 1, np.log(params)[None, :], np.log1p(-params)[None, :])

    @classmethod
    def default_params(cls, n, attrs, rng):
        if rng is None:
            return np.full((n,), 0.5)
        return rng.uniform(0.05, 0.95, size=n)
