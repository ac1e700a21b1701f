"""``indicator``: a node is 1 where its variable takes the node's value, else 0."""

from __future__ import annotations

import numpy as np

from pccc.ir.dists.base import Distribution, int_values, register


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
        hit = int_values(x)[:, None] == vals[None, :]
        return np.where(hit, 0.0, -np.inf)

    @classmethod
    def default_params(cls, n, attrs, rng):
        return None
