"""Hypothesis strategies for L0 circuits and data.

``circuits()`` builds random *smooth and decomposable* circuits: node vectors of random sizes,
products that are element-wise (with size-1 children broadcast) or carry an explicit ``edges``
table, sum vectors over several children, shared sub-circuits (a DAG, not a tree), and
sometimes tied parameters (two vectors naming the same key). ``data_for(circuit, ...)`` draws
matching data with missing values (``-1`` for discrete data, NaN when a variable is continuous).

Example::

    from hypothesis import given
    from tests.strategies import circuits, data_for

    @given(st.data())
    def test_something(data):
        c = data.draw(circuits(max_vars=3))
        x = data.draw(data_for(c, n_rows=5, missing_prob=0.3))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from pccc.ir import Circuit, CircuitBuilder

#: the discrete distributions (brute-force enumeration works for these)
DISCRETE = ("indicator", "categorical", "bernoulli", "binomial")
#: every registered distribution
ALL_DISTS = (*DISCRETE, "gaussian")


class _State:
    """What the recursive builder carries: the builder, variable domains, reuse pools."""

    def __init__(self, draw: Any, b: CircuitBuilder, cards: dict[int, int | None],
                 dists: Sequence[str], max_n: int, normalized: bool, tie_prob: float,
                 rng: np.random.Generator):
        self.draw = draw
        self.b = b
        self.cards = cards
        self.dists = dists
        self.max_n = max_n
        self.normalized = normalized
        self.tie_prob = tie_prob
        self.rng = rng
        self.by_scope: dict[frozenset[int], list[int]] = {}
        self.keys: dict[tuple[Any, ...], list[str]] = {}

    def remember(self, scope: frozenset[int], node: int) -> int:
        self.by_scope.setdefault(scope, []).append(node)
        return node

    def tie_key(self, signature: tuple[Any, ...]) -> str | None:
        """An existing parameter key with this signature, sometimes (tied parameters)."""
        pool = self.keys.get(signature)
        if pool and self.draw(st.floats(0, 1)) < self.tie_prob:
            return str(self.draw(st.sampled_from(pool)))
        return None

    def record_key(self, signature: tuple[Any, ...], key: str | None) -> None:
        if key is not None and key not in self.keys.get(signature, []):
            self.keys.setdefault(signature, []).append(key)


def _dists_for(card: int | None, allowed: Sequence[str]) -> list[str]:
    if card is None:
        return ["gaussian"]
    ok = [d for d in allowed if d in ("indicator", "categorical", "binomial")]
    if card == 2 and "bernoulli" in allowed:
        ok.append("bernoulli")
    return ok


def _input(s: _State, var: int, n: int) -> int:
    card = s.cards[var]
    dist = s.draw(st.sampled_from(_dists_for(card, s.dists)))
    attrs: dict[str, Any] = {}
    if dist == "indicator":
        assert card is not None
        values = s.draw(st.lists(st.integers(0, card - 1), min_size=n, max_size=n))
        attrs = {"card": card, "values": tuple(values)}
    elif dist == "categorical":
        attrs = {"card": card}
    elif dist == "binomial":
        assert card is not None
        attrs = {"total": card - 1}
    sig = ("input", dist, n, tuple(sorted(attrs.items())))
    tie = None if dist == "indicator" else s.tie_key(sig)
    node = s.b.input(var, dist, n=n, tie=tie, **attrs)
    s.record_key(sig, s.b.nodes[node].param)  # type: ignore[union-attr]
    return node


def _split(s: _State, scope: list[int]) -> list[list[int]]:
    """Partition ``scope`` (size >= 2) into 2..3 non-empty parts."""
    k = s.draw(st.integers(2, min(3, len(scope))))
    order = s.draw(st.permutations(scope))
    labels = list(range(k)) + s.draw(
        st.lists(st.integers(0, k - 1), min_size=len(scope) - k, max_size=len(scope) - k))
    parts: list[list[int]] = [[] for _ in range(k)]
    for v, lab in zip(order, labels):
        parts[lab].append(v)
    return [sorted(p) for p in parts]


def _product(s: _State, scope: list[int], n: int) -> int:
    parts = _split(s, scope)
    if s.draw(st.booleans()):
        # element-wise: each child has n nodes or a single broadcast node
        kids = [_vector(s, p, s.draw(st.sampled_from([1, n]))) for p in parts]
        return s.remember(frozenset(scope), s.b.product(kids, n=n))
    kids = [_vector(s, p, s.draw(st.integers(1, s.max_n))) for p in parts]
    edges = np.array([[s.draw(st.integers(0, s.b.size(c) - 1)) for c in kids] for _ in range(n)],
                     dtype=np.int64).reshape(n, len(kids))
    return s.remember(frozenset(scope), s.b.product(kids, edges=edges))


def _sum(s: _State, scope: list[int], n: int) -> int:
    k = s.draw(st.integers(1, 3))
    kids = []
    for _ in range(k):
        if len(scope) == 1:
            kids.append(_input(s, scope[0], s.draw(st.integers(1, s.max_n))))
        else:
            kids.append(_product(s, scope, s.draw(st.integers(1, s.max_n))))
    m = sum(s.b.size(c) for c in kids)
    sig = ("sum", n, m)
    tie = s.tie_key(sig)
    w = s.rng.uniform(0.05, 1.0, size=(n, m))
    if s.normalized:
        w /= w.sum(axis=1, keepdims=True)
    node = s.b.sum(kids, n=n, weights=w, tie=tie)
    s.record_key(sig, s.b.nodes[node].param)  # type: ignore[union-attr]
    return s.remember(frozenset(scope), node)


def _vector(s: _State, scope: list[int], n: int) -> int:
    """A vector of ``n`` nodes over ``scope``: reused, an input, a product or a sum."""
    pool = [c for c in s.by_scope.get(frozenset(scope), []) if s.b.size(c) == n]
    if pool and s.draw(st.integers(0, 3)) == 0:
        return int(s.draw(st.sampled_from(pool)))
    if len(scope) == 1:
        kind = s.draw(st.sampled_from(["input", "sum"]))
        if kind == "input":
            return s.remember(frozenset(scope), _input(s, scope[0], n))
        return _sum(s, scope, n)
    kind = s.draw(st.sampled_from(["sum", "sum", "product"]))
    return _product(s, scope, n) if kind == "product" else _sum(s, scope, n)


@st.composite
def circuits(draw: Any, *, min_vars: int = 1, max_vars: int = 4, max_n: int = 3,
             max_card: int = 3, dists: Sequence[str] = DISCRETE, normalized: bool = True,
             tie_prob: float = 0.3, roots: int = 1, root_kinds: Sequence[str] = ("sum",)
             ) -> Circuit:
    """Random smooth, decomposable L0 circuits with a sum root of one node (by default).

    Args:
        min_vars: fewest variables.
        max_vars: most variables (keep small where tests enumerate assignments).
        max_n: largest node-vector size below the root.
        max_card: largest cardinality of a discrete variable (at least 2).
        dists: distribution names to draw from; ``"gaussian"`` makes some variables continuous.
        normalized: sum weight rows sum to 1; when False they are random positive numbers.
            Inputs are always normalized distributions (so marginalizing a missing value by
            setting its inputs to 1 stays exact).
        tie_prob: chance that a vector reuses an existing parameter key of the same shape.
        roots: nodes of the root vector.
        root_kinds: kinds the root vector is drawn from: ``"sum"``, ``"product"`` (over two
            or more variables; else a sum), ``"input"`` (over one variable; else a sum).
    """
    nv = draw(st.integers(min_vars, max_vars))
    discrete = [d for d in dists if d != "gaussian"]
    cards: dict[int, int | None] = {}
    for v in range(nv):
        continuous = "gaussian" in dists and (not discrete or draw(st.booleans()))
        if continuous:
            cards[v] = None
        elif discrete == ["bernoulli"]:
            cards[v] = 2
        else:
            cards[v] = draw(st.integers(2, max(2, max_card)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    b = CircuitBuilder(rng=rng)
    s = _State(draw, b, cards, list(dists), max_n, normalized, tie_prob, rng)
    kind = draw(st.sampled_from(list(root_kinds))) if len(root_kinds) > 1 else root_kinds[0]
    if kind == "product" and nv >= 2:
        root = _product(s, list(range(nv)), roots)
    elif kind == "input" and nv == 1:
        root = _input(s, 0, roots)
    else:
        root = _sum(s, list(range(nv)), roots)
    return b.build(root, num_vars=nv)


def domains(circuit: Circuit) -> list[int | None]:
    """Cardinality of each variable ``0..num_vars-1`` (None: continuous or unused)."""
    cards = circuit.var_cards()
    return [cards.get(v) for v in range(circuit.num_vars)]


@st.composite
def data_for(draw: Any, circuit: Circuit, n_rows: int | st.SearchStrategy[int] = 6,
             missing_prob: float = 0.3) -> np.ndarray:
    """Data rows for ``circuit``: int64 ``[N, V]`` with ``-1`` = missing.

    When some variable is continuous the array is float64 with NaN = missing.

    Args:
        circuit: the circuit whose variables (and their domains) the data follows.
        n_rows: number of rows, or a strategy for it.
        missing_prob: chance that each value is missing.
    """
    n = n_rows if isinstance(n_rows, int) else draw(n_rows)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cards = domains(circuit)
    continuous = any(c is None for c in cards)
    x = np.zeros((n, len(cards)), dtype=np.float64 if continuous else np.int64)
    for v, card in enumerate(cards):
        x[:, v] = rng.normal(size=n) if card is None else rng.integers(0, card, size=n)
    miss = rng.random(x.shape) < missing_prob
    x[miss] = np.nan if continuous else -1
    return x


@st.composite
def deterministic_circuits(draw: Any, *, max_vars: int = 4, max_card: int = 3) -> Circuit:
    """Random smooth, decomposable and *deterministic* circuits (the kind of a PSDD): the
    children of every sum node have disjoint supports. A vector over one variable is a
    categorical vector or a sum vector over indicators of some of its values; over more, a
    product of two parts, or a decision: a sum vector over ``[X_v = k] * c_k`` for some
    values ``k`` of a variable ``v`` (``c_k``: node ``k`` of a vector over the rest). Sum
    weights are random and normalized; the root is one sum node."""
    nv = draw(st.integers(1, max_vars))
    cards = [draw(st.integers(2, max_card)) for _ in range(nv)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = CircuitBuilder(rng=rng)

    def values(v: int) -> tuple[int, ...]:
        return tuple(draw(st.lists(st.integers(0, cards[v] - 1), min_size=1,
                                   max_size=cards[v], unique=True)))

    def build(scope: list[int], n: int) -> int:
        if len(scope) == 1:
            v = scope[0]
            if draw(st.booleans()):
                return b.input(v, "categorical", n=n, card=cards[v])
            vals = values(v)
            return b.sum([b.input(v, "indicator", n=len(vals), card=cards[v], values=vals)],
                         n=n)
        if draw(st.booleans()):
            k = draw(st.integers(1, len(scope) - 1))
            order = draw(st.permutations(scope))
            parts = [sorted(order[:k]), sorted(order[k:])]
            return b.product([build(p, draw(st.sampled_from([1, n]))) for p in parts], n=n)
        v = draw(st.sampled_from(scope))
        vals = values(v)
        ind = b.input(v, "indicator", n=len(vals), card=cards[v], values=vals)
        rest = build([u for u in scope if u != v], len(vals))
        return b.sum([b.product([ind, rest])], n=n)

    root = build(list(range(nv)), 1)
    if b.nodes[root].kind != "sum":
        root = b.sum([root])
    return b.build(root, num_vars=nv)
