"""The Triton backend's input distribution families, one module per distribution, each
registered with ``@dists.implements("triton", name)`` (see :mod:`.base`)."""

from __future__ import annotations

from pccc.backends.triton.families import (  # noqa: F401  (each module registers its family)
    bernoulli,
    binomial,
    categorical,
    discrete_logistic,
    gaussian,
    indicator,
    masked_categorical,
)
from pccc.backends.triton.families.base import TritonFamily, family

__all__ = ["TritonFamily", "family"]
