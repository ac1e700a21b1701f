"""The torch backend's input distribution families, one module per distribution, each
registered with ``@dists.implements("torch", name)`` (see :mod:`.base`)."""

from __future__ import annotations

from pccc.backends.torch.families import (  # noqa: F401  (each module registers its family)
    bernoulli,
    binomial,
    categorical,
    discrete_logistic,
    gaussian,
    indicator,
    masked_categorical,
)
from pccc.backends.torch.families.base import TorchFamily, family, observed

__all__ = ["TorchFamily", "family", "observed"]
