"""``discrete_logistic``: a logistic density binned onto the integer values ``0..card-1``.

The interval ``[low, high]`` is cut into ``card`` bins of width ``w = (high - low) / card``;
value ``k`` is the bin ``(low + k w, low + (k + 1) w]``, except that the first bin reaches down
to ``-inf`` and the last one up to ``+inf`` (PyJuice's ``DiscreteLogistic``), so that the
probabilities of the ``card`` values add up to 1. A node's parameters are ``(mean, log_scale)``
of the logistic, whose CDF is ``sigmoid((v - mean) / exp(log_scale))``.

With ``a`` and ``b`` the bin's edges in standard units, ``sigmoid(b) - sigmoid(a) =
sigmoid(b) sigmoid(-a) (1 - exp(a - b))``, so the log-probability is a sum of three terms that
neither cancel nor overflow: ``log sigmoid(b) + log sigmoid(-a) + log(1 - exp(-(b - a)))``
(the first bin drops the last two, the last bin the first and third).

``min_std`` (default 0.01) is the smallest standard deviation ``exp(log_scale) * pi / sqrt(3)``
an EM step leaves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pccc.ir.dists.base import Distribution, int_values, register


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log(1 / (1 + exp(-x)))`` without overflow."""
    return -np.logaddexp(0.0, -x)


def log1mexp(d: np.ndarray) -> np.ndarray:
    """``log(1 - exp(-d))`` for ``d >= 0``, accurate for small and large ``d``."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore"):
        small = np.log(-np.expm1(-np.minimum(d, math.log(2))))
        large = np.log1p(-np.exp(-np.maximum(d, math.log(2))))
    return np.where(d < math.log(2), small, large)


def bin_width(attrs: dict[str, Any]) -> float:
    """The width of one bin, ``(high - low) / card``."""
    return (float(attrs["high"]) - float(attrs["low"])) / int(attrs["card"])


@register
class DiscreteLogistic(Distribution):
    """``P(X = k)``: the mass of a logistic ``(mean, exp(log_scale))`` on bin ``k``."""

    name = "discrete_logistic"
    attr_types = {"card": int, "low": float, "high": float, "min_std": float}
    attr_defaults = {"min_std": 0.01}

    @classmethod
    def param_shape(cls, n, attrs):
        return (n, 2)

    @classmethod
    def cardinality(cls, attrs):
        return int(attrs["card"])

    @classmethod
    def check_attrs(cls, n, attrs):
        msg = super().check_attrs(n, attrs)
        if msg:
            return msg
        low, high = float(attrs["low"]), float(attrs["high"])
        if attrs["card"] < 1:
            return f"discrete_logistic: card={attrs['card']}, at least 1"
        if not (math.isfinite(low) and math.isfinite(high) and low < high
                and math.isfinite(high - low)):
            return f"discrete_logistic: low={low!r} must be finite and below high={high!r}"
        min_std = float(cls.attr(attrs, "min_std"))
        if not (math.isfinite(min_std) and min_std > 0):
            return f"discrete_logistic: min_std={min_std!r} must be finite and > 0"
        return None

    @classmethod
    def check_params(cls, params, attrs):
        if not np.all(np.isfinite(params)):
            return "discrete_logistic parameters (mean, log_scale) must be finite"
        return None

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        assert params is not None
        card, low, w = int(attrs["card"]), float(attrs["low"]), bin_width(attrs)
        k = int_values(x)[:, None]
        mu, inv = params[None, :, 0], np.exp(-params[None, :, 1])
        edge = low + k * w  # the bin's lower edge [N, 1]
        with np.errstate(invalid="ignore", over="ignore"):
            a = np.where(edge == mu, 0.0, (edge - mu) * inv)
            b = np.where(edge + w == mu, 0.0, (edge + w - mu) * inv)
            width = np.broadcast_to(w * inv, a.shape)
        first, last = k == 0, k == card - 1
        lp = (np.where(first, 0.0, log_sigmoid(-a)) + np.where(last, 0.0, log_sigmoid(b))
              + np.where(first | last, 0.0, log1mexp(width)))
        return np.broadcast_to(lp, (len(k), n)).copy()

    @classmethod
    def default_params(cls, n, attrs, rng):
        low, high = float(attrs["low"]), float(attrs["high"])
        std = (high - low) / 4  # the interval spans about two standard deviations each side
        log_scale = math.log(std * math.sqrt(3) / math.pi)
        if rng is None:
            return np.tile(np.array([(low + high) / 2, log_scale]), (n, 1))
        return np.stack([rng.normal((low + high) / 2, std, size=n),
                         log_scale - 0.08 * rng.random(n)], axis=1)
