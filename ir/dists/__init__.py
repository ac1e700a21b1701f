"""Input distributions: the registry (:mod:`.base`) and one module per distribution.

``dists.get(name)`` is the class of a registered distribution; ``dists.implementation(backend,
name)`` a backend's implementation of it (see :mod:`pccc.ir.dists.base`).
"""

from __future__ import annotations

from pccc.ir.dists import (  # noqa: F401  (each module registers its distribution)
    bernoulli,
    binomial,
    categorical,
    discrete_logistic,
    gaussian,
    indicator,
    masked_categorical,
)
from pccc.ir.dists.base import (
    Distribution,
    finite_nonnegative,
    get,
    implementation,
    implemented,
    implements,
    int_values,
    names,
    refuse_missing,
    register,
)

__all__ = ["Distribution", "finite_nonnegative", "get", "implementation", "implemented",
           "implements", "int_values", "names", "refuse_missing", "register"]
