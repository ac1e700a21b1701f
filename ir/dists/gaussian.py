"""``gaussian``: a normal density over a continuous variable."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from pccc.ir.dists.base import Distribution, register


@register
class Gaussian(Distribution):
    """Normal density with ``params[i] = (mean, std)``; the variable is continuous."""

    name = "gaussian"
    attr_types: ClassVar[dict[str, type]] = {}
    continuous = True

    @classmethod
    def param_shape(cls, n, attrs):
        return (n, 2)

    @classmethod
    def cardinality(cls, attrs):
        return None

    @classmethod
    def check_params(cls, params, attrs):
        if not np.all(np.isfinite(params)) or np.any(params[:, 1] <= 0):
            return "gaussian parameters must be finite with std > 0"
        return None

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        assert params is not None
        mu, sd = params[None, :, 0], params[None, :, 1]
        with np.errstate(over="ignore"):  # (far from the mean: z overflows, the value is -inf)
            z = (np.asarray(x, dtype=np.float64)[:, None] - mu) / sd
            return -0.5 * z * z - np.log(sd) - 0.5 * math.log(2 * math.pi)

    @classmethod
    def default_params(cls, n, attrs, rng):
        if rng is None:
            return np.tile(np.array([0.0, 1.0]), (n, 1))
        return np.stack([rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)], axis=1)
