"""Input distributions and their registry.

Each distribution is one class registered under a name; adding a new one means writing one
module that subclasses :class:`Distribution` and decorates it with :func:`register`.
A distribution describes a *vector* of ``n`` input nodes over one variable. Its hyperparameters
(``attrs``) are structure; its parameters are a float64 array in the circuit's parameter store.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from pccc.ir import limits

_REGISTRY: dict[str, type[Distribution]] = {}
#: the bits of float64 +inf as an unsigned integer
_INF_BITS = 0x7FF0000000000000


def finite_nonnegative(a: np.ndarray) -> bool:
    """True when every value of the array ``a`` is finite and ``>= 0``.

    For float64 arrays one read decides in the common case: as unsigned integers, the bits of
    ``+0.0 <= x < inf`` lie below those of ``+inf``, and those of every negative value, of
    ``-0.0``, of infinity and of NaN lie at or above them. Only when that test fails are the
    values compared as floats (so ``-0.0`` passes).
    """
    if a.size == 0:
        return True
    if a.dtype == np.float64 and int(a.view(np.uint64).max()) < _INF_BITS:
        return True
    return bool(np.all(np.isfinite(a)) and not np.any(a < 0))


def register(cls: type[Distribution]) -> type[Distribution]:
    """Class decorator: make a distribution available under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"distribution {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Distribution]:
    """Return the distribution class registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown distribution {name!r} (known: {known})") from None


def names() -> list[str]:
    """All registered distribution names, sorted."""
    return sorted(_REGISTRY)


class Distribution:
    """A family of input distributions. Subclasses are stateless: everything is passed in.

    ``attrs`` is a dict of hyperparameters (ints, floats or tuples of ints).
    """

    name: ClassVar[str] = ""
    #: hyperparameter names that must be present, with their python type
    attr_types: ClassVar[dict[str, type]] = {}
    #: True when every node of the vector is a normalized distribution over its variable
    normalized: ClassVar[bool] = True
    #: True for a distribution over a continuous variable (missing: NaN only, -1 is a value)
    continuous: ClassVar[bool] = False

    @classmethod
    def param_shape(cls, n: int, attrs: dict[str, Any]) -> tuple[int, ...] | None:
        """Shape of the parameter array of a vector of ``n`` nodes (None: no parameters)."""
        raise NotImplementedError

    @classmethod
    def cardinality(cls, attrs: dict[str, Any]) -> int | None:
        """Number of values of the variable (None for a continuous variable)."""
        raise NotImplementedError

    @classmethod
    def log_prob(cls, params: np.ndarray | None, attrs: dict[str, Any], x: np.ndarray, n: int
                 ) -> np.ndarray:
        """Log-density of observed values ``x`` (shape [N]) under each node: shape [N, n]."""
        raise NotImplementedError

    @classmethod
    def check_params(cls, params: np.ndarray, attrs: dict[str, Any]) -> str | None:
        """Return a message if ``params`` is out of range, else None."""
        if not np.all(np.isfinite(params)):
            return "parameters must be finite"
        return None

    @classmethod
    def check_attrs(cls, n: int, attrs: dict[str, Any]) -> str | None:
        """Return a message if ``attrs`` is malformed, else None."""
        for key, typ in cls.attr_types.items():
            if key not in attrs:
                return f"{cls.name}: missing attribute {key!r}"
            if not isinstance(attrs[key], typ):
                return f"{cls.name}: attribute {key!r} must be {typ.__name__}"
        extra = set(attrs) - set(cls.attr_types)
        if extra:
            return f"{cls.name}: unknown attribute(s) {', '.join(sorted(extra))}"
        card = cls.cardinality(attrs)
        return None if card is None else limits.values_problem(card, f"{cls.name}: the variable")

    @classmethod
    def total_mass(cls, params: np.ndarray | None, attrs: dict[str, Any], n: int
                   ) -> np.ndarray:
        """The probabilities of all values of a discrete variable summed per node: ``[n]``.

        Sums :meth:`log_prob` over the values a few thousand at a time, so the memory used
        stays bounded whatever the cardinality (at most :data:`~pccc.ir.limits.MAX_VALUES`).
        """
        card = cls.cardinality(attrs)
        assert card is not None
        total = np.zeros(n)
        step = max(1, (1 << 16) // max(n, 1))
        for lo in range(0, card, step):
            lp = cls.log_prob(params, attrs, np.arange(lo, min(card, lo + step)), n)
            total += np.exp(lp).sum(axis=0)
        return total

    @classmethod
    def default_params(cls, n: int, attrs: dict[str, Any], rng: np.random.Generator | None
                       ) -> np.ndarray | None:
        """Parameters to start from: uniform-ish, or random when ``rng`` is given."""
        raise NotImplementedError


def _int_values(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


@register
class Indicator(Distribution):
    """``[X == values[i]]`` for each node ``i``; a literal is an indicator of a binary variable."""

    name = "indicator"
    attr_types = {"card": int, "values": tuple}

    @classmethod
    def param_shape(cls, n, attrs):
        return None

    @classmethod
    def cardinality(cls, attrs):
        return int(attrs["card"])

    @classmethod
    def check_attrs(cls, n, attrs):
        msg = super().check_attrs(n, attrs)
        if msg:
            return msg
        values = attrs["values"]
        if len(values) != n:
            return f"indicator: {len(values)} values for a vector of {n} nodes"
        if any(not 0 <= v < attrs["card"] for v in values):
            return f"indicator: values {values} outside 0..{attrs['card'] - 1}"
        return None

    @classmethod
    def total_mass(cls, params, attrs, n):
        return np.ones(n)  # one value of 0..card-1 each (check_attrs): exactly 1

    @classmethod
    def log_prob(cls, params, attrs, x, n):
        vals = np.asarray(attrs["values"], dtype=np.int64)
        hit = _int_values(x)[:, None] == vals[None, :]
        return np.where(hit, 0.0, -np.inf)

    @classmethod
    def default_params(cls, n, attrs, rng):
        return None


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
        return logp[:, _int_values(x)].T

    @classmethod
    def default_params(cls, n, attrs, rng):
        k = int(attrs["card"])
        if rng is None:
            return np.full((n, k), 1.0 / k)
        p = rng.random((n, k)) + 0.05
        return p / p.sum(axis=1, keepdims=True)


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
        xi = _int_values(x)[:, None]
        with np.errstate(divide="ignore"):
            return np.where(xi == 1, np.log(params)[None, :], np.log1p(-params)[None, :])

    @classmethod
    def default_params(cls, n, attrs, rng):
        if rng is None:
            return np.full((n,), 0.5)
        return rng.uniform(0.05, 0.95, size=n)


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
        xi = _int_values(x)
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
