"""A mutable builder for L0 circuits: add node vectors bottom-up, then :meth:`build`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pccc.ir import dists
from pccc.ir.circuit import Circuit, InputVector, Node, ProductVector, SumVector


class CircuitBuilder:
    """Collects node vectors and parameters; ids are returned in creation order.

    Args:
        rng: when given, parameters left unspecified are drawn at random instead of uniform.

    Example::

        b = CircuitBuilder()
        a = b.input(0, "categorical", n=2, card=3)
        c = b.input(1, "categorical", n=2, card=3)
        p = b.product([a, c])
        s = b.sum([p], n=1)
        circuit = b.build(s)
    """

    def __init__(self, rng: np.random.Generator | int | None = None):
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        if isinstance(rng, int):
            rng = np.random.default_rng(rng)
        self.rng = rng

    def size(self, node_id: int) -> int:
        """Number of nodes in vector ``node_id``."""
        return self.nodes[node_id].n

    def _key(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes)}"

    def _add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def input(self, var: int, dist: str, *, n: int = 1, params: Any = None,
              tie: str | None = None, **attrs: Any) -> int:
        """Add ``n`` input nodes over ``var``. ``tie`` reuses an existing parameter key."""
        cls = dists.get(dist)
        attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
        if dist == "indicator" and "values" not in attrs:
            attrs["values"] = tuple(range(n))
        msg = cls.check_attrs(n, attrs)
        if msg:
            raise ValueError(msg)
        shape = cls.param_shape(n, attrs)
        key = None
        if shape is not None:
            key = tie or self._key("p")
            if tie is None or tie not in self.params:
                arr = (cls.default_params(n, attrs, self.rng) if params is None
                       else np.asarray(params, dtype=np.float64))
                assert arr is not None
                if arr.shape != shape:
                    raise ValueError(f"{dist}: params of shape {arr.shape}, expected {shape}")
                self.params[key] = arr
        return self._add(InputVector(n, var, dist, tuple(sorted(attrs.items())), key))

    def product(self, children: Sequence[int], *, edges: Any = None, n: int | None = None
                ) -> int:
        """Add a product vector; element-wise over children unless ``edges`` is given."""
        sizes = [self.size(c) for c in children]
        if edges is not None:
            edges = np.asarray(edges, dtype=np.int64)
            n = edges.shape[0]
        elif n is None:
            n = max(sizes)
        return self._add(ProductVector(int(n), tuple(int(c) for c in children), edges))

    def sum(self, children: Sequence[int], *, n: int = 1, weights: Any = None,
            tie: str | None = None) -> int:
        """Add a sum vector of ``n`` nodes with a dense ``[n, sum child sizes]`` weight array."""
        m = sum(self.size(c) for c in children)
        key = tie or self._key("w")
        if tie is None or tie not in self.params:
            if weights is None:
                if self.rng is None:
                    w = np.full((n, m), 1.0 / m)
                else:
                    w = self.rng.random((n, m)) + 0.05
                    w /= w.sum(axis=1, keepdims=True)
            else:
                w = np.asarray(weights, dtype=np.float64).reshape(n, m)
            self.params[key] = w
        return self._add(SumVector(int(n), tuple(int(c) for c in children), key))

    def build(self, root: int | None = None, *, num_vars: int = 0) -> Circuit:
        """Freeze into a :class:`Circuit`, dropping nothing (run ``canonicalize`` for that)."""
        root = len(self.nodes) - 1 if root is None else root
        return Circuit(tuple(self.nodes), dict(self.params), num_vars, root)
