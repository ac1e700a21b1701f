"""An oracle for the image input distributions, independent of :mod:`pccc.ir.dists`: their
probabilities written out from the definitions (differences of logistic CDFs, table entries
under a mask), tiny random circuits over them, and evaluation in probability space with
torch float64 autograd (flows as gradients w.r.t. the input nodes' values)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from pccc.ir import Circuit, CircuitBuilder, InputVector, ProductVector, SumVector

#: the distributions this oracle knows
DISTS = ("discrete_logistic", "masked_categorical", "categorical")


def logistic_cdf(z: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-z))


def input_probs(nd: InputVector, p: torch.Tensor, x: np.ndarray) -> torch.Tensor:
    """``P(X = x_b)`` under each node: ``[N, n]`` (values in range, none missing)."""
    a = nd.attr_dict()
    k = torch.as_tensor(np.asarray(x, np.int64))
    if nd.dist == "discrete_logistic":
        card, low, high = a["card"], float(a["low"]), float(a["high"])
        w = (high - low) / card
        mu, s = p[:, 0][None, :], torch.exp(p[:, 1])[None, :]
        kk = k.double()[:, None]
        a = torch.where(kk == 0, -torch.inf, (low + kk * w - mu) / s)
        b = torch.where(kk == card - 1, torch.inf, (low + (kk + 1) * w - mu) / s)
        # the bin's mass as a difference of the tail it lies in (no cancellation near 1)
        return torch.where(a > 0, logistic_cdf(-a) - logistic_cdf(-b),
                           logistic_cdf(b) - logistic_cdf(a))
    table = p
    if nd.dist == "masked_categorical":
        rows = torch.as_tensor(np.asarray(a["mask"], np.float64).reshape(-1, a["card"]))
        table = p * rows[torch.arange(nd.n) % rows.shape[0]]
    return table[:, k].T


def evaluate(c: Circuit, x: np.ndarray, params: dict[str, torch.Tensor],
             bias: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """``p(x)`` per row ``[N]`` (missing: ``-1``, summed out by value 1 at its inputs);
    ``bias[i]`` ``[N, n]`` multiplies input vector ``i``'s values (its gradient at 1, times
    the node's value over ``p(x)``, is the node's flow)."""
    vals: list[torch.Tensor] = []
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, InputVector):
            col = x[:, nd.var]
            miss = torch.as_tensor(col == -1)[:, None]
            v = torch.where(miss, 1.0, input_probs(nd, params[nd.param or ""],
                                                    np.where(col == -1, 0, col)))
            if bias is not None and i in bias:
                v = v * bias[i]
        elif isinstance(nd, ProductVector):
            table = nd.edge_table([c.nodes[ch].n for ch in nd.children])
            v = torch.ones(len(x), nd.n, dtype=torch.float64)
            for j, ch in enumerate(nd.children):
                v = v * vals[ch][:, torch.as_tensor(table[:, j])]
        else:
            assert isinstance(nd, SumVector)
            kids = torch.cat([vals[ch] for ch in nd.children], dim=1)
            v = kids @ params[nd.param].T
        vals.append(v)
    return vals[c.root][:, 0]


def tensors(c: Circuit) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(np.asarray(c.params[k]), dtype=torch.float64) for k in c.params}


def log_likelihood(c: Circuit, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.log(evaluate(c, x, tensors(c))).numpy()


def flows(c: Circuit, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """Expected edge counts per sum key (``[n, m]``) and input node flows ``[N, n]`` per input
    vector, summed over the rows of ``x`` (as EM accumulates them)."""
    params = tensors(c)
    for nd in c.nodes:
        if isinstance(nd, SumVector):
            params[nd.param].requires_grad_(True)
    bias = {i: torch.ones(len(x), nd.n, dtype=torch.float64, requires_grad=True)
            for i, nd in enumerate(c.nodes) if isinstance(nd, InputVector)}
    torch.log(evaluate(c, x, params, bias)).sum().backward()
    sums = {nd.param: (params[nd.param].grad * params[nd.param]).detach().numpy()
            for nd in c.nodes if isinstance(nd, SumVector)}
    return sums, {i: b.grad.numpy() for i, b in bias.items()}


def assignments(c: Circuit) -> np.ndarray:
    """Every joint assignment of the circuit's (discrete) variables: ``[prod cards, V]``."""
    cards = c.var_cards()
    ranges = [range(int(cards[v])) for v in range(c.num_vars)]
    return np.array(list(itertools.product(*ranges)), dtype=np.int64)


def _mask(draw: Any, card: int, rows: int) -> tuple[int, ...]:
    out: list[int] = []
    for _ in range(rows):
        row = draw(st.lists(st.integers(0, 1), min_size=card, max_size=card))
        if not any(row):
            row[draw(st.integers(0, card - 1))] = 1
        out += row
    return tuple(out)


def _attrs(draw: Any, dist: str, card: int, n: int) -> dict[str, Any]:
    if dist == "discrete_logistic":
        low = draw(st.floats(-3, 3))
        attrs: dict[str, Any] = {"card": card, "low": low,
                                 "high": low + draw(st.floats(0.5, 4))}
        if draw(st.booleans()):
            attrs["min_std"] = draw(st.floats(0.01, 0.5))
        return attrs
    if dist == "masked_categorical":
        return {"card": card, "mask": _mask(draw, card, draw(st.sampled_from([1, n])))}
    return {"card": card}


def _params(draw: Any, dist: str, attrs: dict[str, Any], n: int, rng: np.random.Generator
            ) -> np.ndarray:
    if dist == "discrete_logistic":
        mid = (attrs["low"] + attrs["high"]) / 2
        return np.stack([rng.normal(mid, 1.0, n), rng.uniform(-2.5, 0.5, n)], axis=1)
    p = rng.random((n, attrs["card"])) + 0.05
    if dist == "masked_categorical":
        rows = np.asarray(attrs["mask"]).reshape(-1, attrs["card"])
        p = p * rows[np.arange(n) % len(rows)]
    return p / p.sum(axis=1, keepdims=True)


@st.composite
def circuits(draw: Any, dists: tuple[str, ...] = DISTS[:2], max_vars: int = 3,
             max_card: int = 4) -> Circuit:
    """A tiny smooth, decomposable, normalized circuit: a root sum over ``K`` fully factorized
    components, some variables under a sum vector of their own inputs, and parameters tied
    between two input vectors over one variable now and then."""
    nv = draw(st.integers(1, max_vars))
    k = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = CircuitBuilder(rng=rng)
    parts = []
    for v in range(nv):
        dist = draw(st.sampled_from(dists))
        card = draw(st.integers(1 if dist == "discrete_logistic" else 2, max_card))
        attrs = _attrs(draw, dist, card, k)
        first = b.input(v, dist, n=k, params=_params(draw, dist, attrs, k, rng), **attrs)
        if draw(st.booleans()):
            tie = b.nodes[first].param if draw(st.booleans()) else None
            second = b.input(v, dist, n=k, params=None if tie else _params(
                draw, dist, attrs, k, rng), tie=tie, **attrs)
            first = b.sum([first, second], n=k)
        parts.append(first)
    prod = b.product(parts) if len(parts) > 1 else parts[0]
    return b.build(b.sum([prod], n=1), num_vars=nv)


@st.composite
def data_for(draw: Any, c: Circuit, n_rows: int = 5, missing_prob: float = 0.3) -> np.ndarray:
    """Rows of values each variable can take under the circuit (``-1``: missing)."""
    cards = c.var_cards()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = np.stack([rng.integers(0, int(cards[v]), n_rows) for v in range(c.num_vars)], axis=1)
    x[rng.random(x.shape) < missing_prob] = -1
    return x


def logistic_moments(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and second moment of each node's (continuous) logistic."""
    std = np.exp(p[:, 1]) * math.pi / math.sqrt(3)
    return p[:, 0], std * std + p[:, 0] ** 2
