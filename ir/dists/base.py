"""The distribution registry and the base class of every input distribution.

A distribution is one class registered under a name (:func:`register`): its hyperparameters,
their checks, its parameter shape and its float64 numpy log-probability, which is what the
reference evaluator computes with. A backend supplies its own implementation of each
distribution it runs, registered beside it with :func:`implements` and looked up with
:func:`implementation`; a backend without one refuses the distribution by name
(:func:`refuse_missing`). So a new distribution is one module here plus at most one module per
backend.

A distribution describes a *vector* of ``n`` input nodes over one variable. Its hyperparameters
(``attrs``) are structure; its parameters are a float64 array in the circuit's parameter store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np

from pccc.ir import limits
from pccc.ir.errors import PcccError

_REGISTRY: dict[str, type[Distribution]] = {}
#: (backend, distribution name) -> that backend's implementation of the distribution
_IMPLS: dict[tuple[str, str], Any] = {}
_T = TypeVar("_T")
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


def implements(backend: str, name: str) -> Callable[[_T], _T]:
    """Decorator: register the decorated object as ``backend``'s implementation of the
    distribution ``name`` (which must be registered)."""
    get(name)

    def deco(impl: _T) -> _T:
        if (backend, name) in _IMPLS:
            raise ValueError(f"{backend} backend: distribution {name!r} is already implemented")
        _IMPLS[backend, name] = impl
        return impl
    return deco


def implemented(backend: str) -> list[str]:
    """The distributions ``backend`` has registered implementations of, sorted."""
    return sorted(name for b, name in _IMPLS if b == backend)


def implementation(backend: str, name: str) -> Any:
    """``backend``'s implementation of the distribution ``name``.

    Raises:
        PcccError: the backend has none (the message names both and lists what it has).
    """
    impl = _IMPLS.get((backend, name))
    if impl is None:
        refuse_missing(backend, [name], implemented(backend))
    return impl


def refuse_missing(backend: str, used: Iterable[str], have: Iterable[str]) -> None:
    """Refuse, by name, the first distribution of ``used`` that is not among ``have``.

    Raises:
        PcccError: ``"<backend> backend: no implementation of input distribution '<name>'
            (it has: ...)"``.
    """
    have = sorted(set(have))
    for name in used:
        if name not in have:
            raise PcccError(f"{backend} backend: no implementation of input distribution "
                            f"{name!r} (it has: {', '.join(have)})")


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
    #: hyperparameters that may be left out, with the value they then take
    attr_defaults: ClassVar[dict[str, Any]] = {}

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
                if key in cls.attr_defaults:
                    continue
                return f"{cls.name}: missing attribute {key!r}"
            ok = (isinstance(attrs[key], (int, float)) and not isinstance(attrs[key], bool)
                  if typ is float else isinstance(attrs[key], typ))
            if not ok:
                return f"{cls.name}: attribute {key!r} must be {typ.__name__}"
        extra = set(attrs) - set(cls.attr_types)
        if extra:
            return f"{cls.name}: unknown attribute(s) {', '.join(sorted(extra))}"
        card = cls.cardinality(attrs)
        return None if card is None else limits.values_problem(card, f"{cls.name}: the variable")

    @classmethod
    def check_layer_attrs(cls, n: int, attrs: dict[str, Any]) -> str | None:
        """:meth:`check_attrs` of an L3 input layer of ``n`` nodes: whole vectors with these
        ``attrs`` back to back (the same check unless a hyperparameter holds one entry per
        node of a vector)."""
        return cls.check_attrs(n, attrs)

    @classmethod
    def attr(cls, attrs: dict[str, Any], key: str) -> Any:
        """The hyperparameter ``key`` of ``attrs``, or its default when left out."""
        return attrs[key] if key in attrs else cls.attr_defaults[key]

    @classmethod
    def node_attrs(cls, attrs: dict[str, Any], i: int) -> dict[str, Any]:
        """The hyperparameters of node ``i`` of a vector (or of an L3 input layer, whose nodes
        are whole vectors with these ``attrs`` back to back) as a vector of that one node.
        The same for every node unless a hyperparameter holds one entry per node."""
        return attrs

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


def int_values(x: np.ndarray) -> np.ndarray:
    """Observed values as int64."""
    return np.asarray(x).astype(np.int64)
