"""Selectable input distributions for the structure generators.

A generator asks for "an input vector of ``n`` nodes over variable ``v``" and an
:class:`InputSpec` says which distribution that is: ``categorical`` (``card`` values),
``bernoulli``, ``binomial`` (``total`` trials, values ``0..total``), ``gaussian``,
``discrete_logistic`` (``card`` bins over ``[low, high]``) or ``masked_categorical`` (``card``
values, of which a mask allows some: one mask for every variable, or one per variable).

Example::

    spec = InputSpec.parse("categorical", card=256)
    vec = spec.add(builder, var=3, n=32, draw=ParamDraw.from_seed(0))
    spec = InputSpec.parse("discrete_logistic", card=256, low=-1.0, high=1.0)
    spec = InputSpec.parse("masked_categorical", card=4, mask=[[1, 1, 0, 0], [0, 1, 1, 1]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.builder import CircuitBuilder
from pccc.structures.init import ParamDraw, draw_rows, read_only

#: the distributions a generator can put at its inputs
INPUT_DISTS = ("categorical", "bernoulli", "binomial", "gaussian", "discrete_logistic",
               "masked_categorical")


@dataclass(frozen=True)
class InputSpec:
    """Which distribution the input vectors of a generated circuit hold."""

    dist: str = "categorical"
    """one of :data:`INPUT_DISTS`"""
    attrs: tuple[tuple[str, Any], ...] = field(default=(("card", 2),))
    """hyperparameters of the distribution, sorted by name"""
    masks: tuple[tuple[int, ...], ...] | None = None
    """``masked_categorical`` with a mask per variable: row ``v`` is variable ``v``'s (None:
    the one mask is in :attr:`attrs`)"""

    @classmethod
    def parse(cls, dist: str = "categorical", *, card: int | None = None,
              total: int | None = None, low: float | None = None, high: float | None = None,
              min_std: float | None = None, mask: Any = None) -> InputSpec:
        """Build a spec from a distribution name and its size.

        Args:
            dist: one of :data:`INPUT_DISTS`.
            card: number of values (categorical, discrete_logistic, masked_categorical;
                default 2, or the mask's length).
            total: number of trials (binomial; default ``card - 1`` or 1).
            low, high: the interval a discrete logistic's ``card`` bins cut (default
                ``[0, card]``: one unit per value).
            min_std: a discrete logistic's smallest standard deviation under EM (default
                0.01).
            mask: a masked categorical's allowed values, 0 or 1: ``card`` entries for every
                variable, or ``[num_vars, card]``, a row per variable (default: all allowed).

        Raises:
            ValueError: an unknown distribution or hyperparameters it refuses.
        """
        if dist not in INPUT_DISTS:
            raise ValueError(f"unknown input distribution {dist!r} (use {', '.join(INPUT_DISTS)})")
        if dist == "categorical":
            return cls(dist, (("card", int(card or 2)),))
        if dist == "binomial":
            t = total if total is not None else (card - 1 if card else 1)
            return cls(dist, (("total", int(t)),))
        if dist == "discrete_logistic":
            k = int(card or 2)
            attrs: dict[str, Any] = {"card": k, "low": float(0.0 if low is None else low),
                                     "high": float(k if high is None else high)}
            if min_std is not None:
                attrs["min_std"] = float(min_std)
            return cls._checked(dist, attrs)
        if dist == "masked_categorical":
            m = np.ones(int(card or 2), np.int64) if mask is None else np.asarray(mask)
            k = int(card or m.shape[-1])
            rows = tuple(tuple(int(v) for v in row) for row in m.reshape(-1, m.shape[-1]))
            spec = cls._checked(dist, {"card": k, "mask": rows[0]})
            if m.ndim == 1:
                return spec
            for row in rows:
                cls._checked(dist, {"card": k, "mask": row})
            return cls(dist, (("card", k),), rows)
        return cls(dist, ())

    @classmethod
    def _checked(cls, dist: str, attrs: dict[str, Any]) -> InputSpec:
        msg = dists.get(dist).check_attrs(1, attrs)
        if msg:
            raise ValueError(msg)
        return cls(dist, tuple(sorted(attrs.items())))

    def var_attrs(self, var: int) -> dict[str, Any]:
        """The hyperparameters of the input vectors over variable ``var``."""
        attrs = dict(self.attrs)
        if self.masks is not None:
            if not 0 <= var < len(self.masks):
                raise ValueError(f"masked_categorical: no mask for variable {var} (the spec "
                                 f"has {len(self.masks)} rows)")
            attrs["mask"] = self.masks[var]
        return attrs

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

    def init_params(self, n: int, draw: ParamDraw, attrs: dict[str, Any] | None = None
                    ) -> np.ndarray:
        """Random (or, without ``draw.rng``, default) read-only parameters of ``n`` nodes
        (``attrs``: the vector's hyperparameters, default :attr:`attrs`).

        Categorical tables are ``exp(-s u)`` normalized (a masked categorical's with 0 at the
        values its mask leaves out) and Bernoulli/binomial probabilities the first entry of
        such a normalized pair (``s = draw.spread.inputs``); Gaussians get means drawn from
        ``N(0, 0.5^2)`` and standard deviation 1; discrete logistics PyJuice's draw (means
        around the interval's middle, scales a quarter of it).
        """
        attrs = dict(self.attrs) if attrs is None else attrs
        rng = draw.rng
        if rng is None:  # a zero-copy broadcast of one node's default parameters
            p = dists.get(self.dist).default_params(1, attrs, None)
            assert p is not None
            return np.broadcast_to(np.asarray(p, dtype=np.float64)[0], (n,) + p.shape[1:])
        if self.dist == "categorical":
            return read_only(draw_rows(rng, (n, attrs["card"]), draw.spread.inputs))
        if self.dist in ("bernoulli", "binomial"):
            return read_only(draw_rows(rng, (n, 2), draw.spread.inputs)[:, 0].copy())
        if self.dist == "masked_categorical":
            from pccc.ir.dists.masked_categorical import mask_rows

            p = draw_rows(rng, (n, attrs["card"]), draw.spread.inputs) * mask_rows(attrs, n)
            return read_only(p / p.sum(axis=1, keepdims=True))
        if self.dist == "discrete_logistic":
            p = dists.get(self.dist).default_params(n, attrs, rng)
            assert p is not None
            return read_only(p)
        mu = rng.normal(scale=0.5, size=n)
        return read_only(np.stack([mu, np.ones(n)], axis=1))

    def add(self, b: CircuitBuilder, var: int, n: int, draw: ParamDraw,
            tie: str | None = None) -> int:
        """Add an input vector of ``n`` nodes over ``var``; ``tie`` shares an existing key."""
        attrs = self.var_attrs(var)
        params = (None if tie is not None and tie in b.params
                  else self.init_params(n, draw, attrs))
        return b.input(var, self.dist, n=n, params=params, tie=tie, **attrs)
