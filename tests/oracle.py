"""An oracle independent of the reference evaluator: scalar nodes, probability space, loops.

Input densities are written out here from their definitions (not taken from
:mod:`pccc.ir.dists`), every scalar node is evaluated one at a time, and marginals are sums over
completions. Slow on purpose: use it on the small circuits of :mod:`tests.strategies`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from pccc.ir import Circuit, InputVector, ProductVector, SumVector


def _input_prob(nd: InputVector, params: np.ndarray | None, i: int, v: float) -> float:
    """Probability (density) of value ``v`` under scalar node ``i`` of an input vector."""
    a = nd.attr_dict()
    if nd.dist == "indicator":
        return 1.0 if int(v) == a["values"][i] else 0.0
    assert params is not None
    if nd.dist == "categorical":
        return float(params[i, int(v)])
    if nd.dist == "bernoulli":
        p = float(params[i])
        return p if int(v) == 1 else 1.0 - p
    if nd.dist == "binomial":
        p, total, k = float(params[i]), a["total"], int(v)
        return math.comb(total, k) * p**k * (1.0 - p) ** (total - k)
    if nd.dist == "gaussian":
        mu, sd = float(params[i, 0]), float(params[i, 1])
        return math.exp(-0.5 * ((v - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
    raise NotImplementedError(nd.dist)


def _missing(v: float) -> bool:
    return bool(np.isnan(v)) or v == -1


def scalar_values(c: Circuit, row: np.ndarray) -> list[list[float]]:
    """Probability of every scalar node for one example (missing inputs count as 1)."""
    vals: list[list[float]] = []
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            v = float(row[nd.var])
            p = c.param_of(len(vals))
            vals.append([1.0 if _missing(v) else _input_prob(nd, p, i, v)
                         for i in range(nd.n)])
        elif isinstance(nd, ProductVector):
            sizes = [c.nodes[ch].n for ch in nd.children]
            out = []
            for i in range(nd.n):
                prod = 1.0
                for j, ch in enumerate(nd.children):
                    if nd.edges is not None:
                        idx = int(nd.edges[i, j])
                    else:
                        idx = 0 if sizes[j] == 1 else i
                    prod *= vals[ch][idx]
                out.append(prod)
            vals.append(out)
        else:
            assert isinstance(nd, SumVector)
            kids = [v for ch in nd.children for v in vals[ch]]
            w = c.params[nd.param]
            vals.append([sum(float(w[i, j]) * kids[j] for j in range(len(kids)))
                         for i in range(nd.n)])
    return vals


def probability(c: Circuit, row: np.ndarray) -> float:
    """``p(row)`` of the root node (missing values are marginalized by the circuit)."""
    return scalar_values(c, row)[c.root][0]


def domains(c: Circuit) -> list[int]:
    """Cardinality of every variable; all must be discrete."""
    cards = c.var_cards()
    out = []
    for v in range(c.num_vars):
        k = cards.get(v)
        if k is None:
            raise ValueError(f"variable {v} is continuous or unused: cannot enumerate")
        out.append(k)
    return out


def enumerate_assignments(c: Circuit) -> np.ndarray:
    """Every complete assignment of the (discrete) variables: int64 ``[prod(cards), V]``."""
    cards = domains(c)
    return np.array(list(itertools.product(*(range(k) for k in cards))),
                    dtype=np.int64).reshape(-1, len(cards))


def brute_force_marginal(c: Circuit, row: np.ndarray) -> float:
    """``p(observed part of row)`` as the sum over every completion of the missing values."""
    row = np.asarray(row)
    cards = domains(c)
    miss = [v for v in range(len(cards)) if row[v] == -1]
    total = 0.0
    for fill in itertools.product(*(range(cards[v]) for v in miss)):
        full = row.copy()
        full[miss] = fill
        total += probability(c, full)
    return total


def joint_table(c: Circuit) -> tuple[np.ndarray, np.ndarray]:
    """Every complete assignment ``[S, V]`` and its probability ``[S]`` (scalar oracle)."""
    states = enumerate_assignments(c)
    return states, np.array([probability(c, s) for s in states])


def consistent(states: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Which of ``states`` agree with the observed values of ``row`` (``-1`` = missing)."""
    row = np.asarray(row)
    obs = row != -1
    return np.all(states[:, obs] == row[obs], axis=1)


def max_product_value(c: Circuit, row: np.ndarray) -> float:
    """The max-product value of the root for one row: sums take their largest weighted
    child, an input node over a missing variable its largest probability."""
    vals: list[list[float]] = []
    cards = c.var_cards()
    for nd in c.nodes:
        if isinstance(nd, InputVector):
            p = c.param_of(len(vals))
            v = row[nd.var]
            opts = range(cards[nd.var] or 0) if v == -1 else [v]
            vals.append([max(_input_prob(nd, p, i, k) for k in opts) for i in range(nd.n)])
        elif isinstance(nd, ProductVector):
            sizes = [c.nodes[ch].n for ch in nd.children]
            vals.append([math.prod(
                vals[ch][int(nd.edges[i, j]) if nd.edges is not None else
                         (0 if sizes[j] == 1 else i)] for j, ch in enumerate(nd.children))
                for i in range(nd.n)])
        else:
            assert isinstance(nd, SumVector)
            kids = [v for ch in nd.children for v in vals[ch]]
            w = c.params[nd.param]
            vals.append([max(float(w[i, j]) * kids[j] for j in range(len(kids)))
                         for i in range(nd.n)])
    return vals[c.root][0]
