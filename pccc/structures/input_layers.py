"""Selectable input distributions for the structure generators.

A generator asks for "an input vector of ``n`` nodes over variable ``v``" and an
:class:`InputSpec` says which distribution that is: ``categorical`` (``card`` values),
``bernoulli``, ``binomial`` (``total`` trials, values ``0..total``) or ``gaussian``.

Example::

    spec = InputSpec.parse("categorical", card=256)
    vec = spec.add(builder, var=3, n=32, draw=ParamDraw.from_seed(0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.builder import CircuitBuilder
from pccc.structures.init import ParamDraw, draw_rows, read_only

#: the distributions a generator can put at its inputs
INPUT_DISTS = ("categorical", "bernoulli", "binomial", "gaussian")


@dataclass(frozen=True)
class InputSpec:
    """Which distribution the input vectors of a generated circuit hold."""

    dist: str = "categorical"
    """one of :data:`INPUT_DISTS`"""
    attrs: tuple[tuple[str, Any], ...] = field(default=(("card", 2),))
    """hyperparameters of the distribution, sorted by name"""

    @classmethod
    def parse(cls, dist: str = "categorical", *, card: int | None = None,
              total: int | None = None) -> InputSpec:
        """Build a spec from a distribution name and its size.

        Args:
            dist: ``categorical``, ``bernoulli``, ``binomial`` or ``gaussian``.
            card: number of categories (categorical; default 2).
            total: number of trials (binomial; default ``card - 1`` or 1).
        """
        if dist not in INPUT_DISTS:
            raise ValueError(f"unknown input distribution {dist!r} (use {', '.join(INPUT_DISTS)})")
        if dist == "categorical":
            return cls(dist, (("card", int(card or 2)),))
        if dist == "binomial":
            t = total if total is not None else (card - 1 if card else 1)
            return cls(dist, (("total", int(t)),))
        return cls(dist, ())

    @classmethod
    def for_data(cls, data: np.ndarray, dist: str | None = None) -> InputSpec:
        """A spec fitted to a data array: categorical over ``max + 1`` values for integer data,
        Gaussian for non-integer data (or ``dist`` when given)."""
        x = np.asarray(data)
        integral = np.issubdtype(x.dtype, np.integer) or bool(
            np.all(np.isnan(x) | (x == np.floor(x))))
        if dist is None:
            dist = "categorical" if integral else "gaussian"
        card = int(np.nanmax(x)) + 1 if integral and x.size else 2
        return cls.parse(dist, card=max(card, 2))

    @property
    def cardinality(self) -> int | None:
        """Number of values of a variable (None: continuous)."""
        return dists.get(self.dist).cardinality(dict(self.attrs))

    def init_params(self, n: int, draw: ParamDraw) -> np.ndarray:
        """Random (or, without ``draw.rng``, default) read-only parameters of ``n`` nodes.

        Categorical tables are ``exp(-s u)`` normalized and Bernoulli/binomial probabilities
        the first entry of such a normalized pair (``s = draw.spread.inputs``); Gaussians get
        means drawn from ``N(0, 0.5^2)`` and standard deviation 1.
        """
        attrs = dict(self.attrs)
        rng = draw.rng
        if rng is None:  # a zero-copy broadcast of one node's default parameters
            p = dists.get(self.dist).default_params(1, attrs, None)
            assert p is not None
            return np.broadcast_to(np.asarray(p, dtype=np.float64)[0], (n,) + p.shape[1:])
        if self.dist == "categorical":
            return read_only(draw_rows(rng, (n, attrs["card"]), draw.spread.inputs))
        if self.dist in ("bernoulli", "binomial"):
            return read_only(draw_rows(rng, (n, 2), draw.spread.inputs)[:, 0].copy())
        mu = rng.normal(scale=0.5, size=n)
        return read_only(np.stack([mu, np.ones(n)], axis=1))

    def add(self, b: CircuitBuilder, var: int, n: int, draw: ParamDraw,
            tie: str | None = None) -> int:
        """Add an input vector of ``n`` nodes over ``var``; ``tie`` shares an existing key."""
        params = None if tie is not None and tie in b.params else self.init_params(n, draw)
        return b.input(var, self.dist, n=n, params=params, tie=tie, **dict(self.attrs))
