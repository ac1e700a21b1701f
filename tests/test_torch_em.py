"""EM on the torch backend against flows from a naive autograd evaluator (an independent
oracle: the gradient of the log-likelihood w.r.t. a log-weight is that edge's expected count,
and w.r.t. an additive offset on an input node it is the node's flow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pccc
from pccc.backends.reference import log_likelihood
from pccc.ir.circuit import InputVector, SumVector
from tests import naive_torch
from tests.strategies import ALL_DISTS, circuits, data_for
from tests.test_torch_backend import DEVICE

# tiny tensors: one intra-op thread avoids OpenMP contention on small, busy machines
torch.set_num_threads(1)


def _oracle_flows(c, x):
    """(sum flows per key, input node flows per input vector id ``[N, n]``) over finite rows."""
    fin = np.isfinite(log_likelihood(c, x))
    x = x[fin]
    raw = naive_torch.raw_leaves(c)
    for nd in c.nodes:  # sums: leaves are the log-weights themselves
        if isinstance(nd, SumVector):
            with torch.no_grad():
                raw[nd.param] = torch.log(torch.as_tensor(np.asarray(c.params[nd.param])))
            raw[nd.param].requires_grad_(True)
    bias = {i: torch.zeros(len(x), nd.n, dtype=torch.float64, requires_grad=True)
            for i, nd in enumerate(c.nodes) if isinstance(nd, InputVector)}
    if len(x):
        naive_torch.evaluate(c, x, raw, bias, direct=True).sum().backward()
    sums = {nd.param: _g(raw[nd.param]) for nd in c.nodes if isinstance(nd, SumVector)}
    return sums, {i: _g(b) for i, b in bias.items()}, x


def _g(t):
    return np.zeros(t.shape) if t.grad is None else t.grad.numpy()


def _input_stats(nd, p, f, col, miss):
    """Sufficient statistics of one input vector (flows ``f`` ``[N, n]``)."""
    fo, fm = np.where(miss[:, None], 0.0, f), np.where(miss[:, None], f, 0.0).sum(0)
    if nd.dist == "categorical":
        onehot = np.eye(p.shape[1])[col.astype(np.int64)]  # [N, K]
        return fo.T @ onehot + fm[:, None] * p
    if nd.dist in ("bernoulli", "binomial"):
        tot = 1 if nd.dist == "bernoulli" else nd.attr_dict()["total"]
        s = fo.T @ col + fm * tot * p
        return np.stack([s, tot * f.sum(0)], 1)
    mu, sd = p[:, 0], p[:, 1]
    return np.stack([f.sum(0), fo.T @ col + fm * mu, fo.T @ (col * col) + fm * (sd * sd + mu * mu)],
                    1)


def _input_update(dist, p, s, eta, alpha):
    if dist == "categorical":
        return (1 - eta) * p + eta * (s + alpha / p.shape[1]) / (s.sum(1, keepdims=True) + alpha)
    if dist in ("bernoulli", "binomial"):
        return (1 - eta) * p + eta * (s[:, 0] + alpha / 2) / (s[:, 1] + alpha)
    mu, sd = p[:, 0], p[:, 1]
    mean = (s[:, 1] + alpha * mu) / (s[:, 0] + alpha)
    var = (s[:, 2] + alpha * (sd * sd + mu * mu)) / (s[:, 0] + alpha) - mean * mean
    std = np.sqrt(np.maximum(var, 1e-6))
    return np.stack([(1 - eta) * mu + eta * mean, (1 - eta) * sd + eta * std], 1)


def expected_em(c, batches, eta, alpha):
    """The source parameters after one EM step over ``batches`` (flows summed)."""
    flows: dict = {}
    stats: dict = {}
    for x in batches:
        sums, node_flows, xf = _oracle_flows(c, x)
        for k, v in sums.items():
            flows[k] = flows.get(k, 0) + v
        miss_all = (xf == -1) | (np.isnan(xf) if xf.dtype.kind == "f" else False)
        for i, f in node_flows.items():
            nd = c.nodes[i]
            if nd.param is None:
                continue
            miss = miss_all[:, nd.var]
            col = np.where(miss, 0, xf[:, nd.var]).astype(np.float64)
            s = _input_stats(nd, np.asarray(c.params[nd.param]), f, col, miss)
            stats[nd.param] = stats.get(nd.param, 0) + s
    out = {}
    for k, f in flows.items():
        w = np.asarray(c.params[k])
        out[k] = (1 - eta) * w + eta * (f + alpha / w.shape[1]) / (f.sum(1, keepdims=True) + alpha)
    dist_of = {nd.param: nd.dist for nd in c.nodes if isinstance(nd, InputVector) and nd.param}
    for k, s in stats.items():
        out[k] = _input_update(dist_of[k], np.asarray(c.params[k]), s, eta, alpha)
    return out


@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float64, 1e-9, 1e-12),
                                             (torch.float32, 1e-5, 1e-6)])
@settings(max_examples=25)
@given(data=st.data())
def test_minibatch_em_step_equals_oracle(data, dtype, rtol, atol):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS, normalized=data.draw(st.booleans())))
    pmiss = data.draw(st.sampled_from([0.0, 0.3]))  # 0: the no-missing fast paths
    batches = [data.draw(data_for(c, n_rows=n, missing_prob=pmiss)) for n in (4, 3)]
    eta = data.draw(st.floats(0.05, 1.0))
    alpha = data.draw(st.floats(0.01, 2.0))
    model = pccc.compile(c, backend="torch", dtype=dtype, device=DEVICE)
    # the upstream gradient must not matter
    g = torch.tensor([0.5, -1.0, 2.0, 0.25], device=DEVICE, dtype=dtype)
    for x in batches:
        ll = model(torch.as_tensor(x))
        (ll * g[: len(ll)]).sum().backward()
    pccc.optim.MiniBatchEM(model, step_size=eta, pseudocount=alpha).step()
    got = model.source_params()
    want = expected_em(c, batches, eta, alpha)
    for key, w in want.items():
        np.testing.assert_allclose(got[key], w, rtol=rtol, atol=atol, err_msg=key)
    assert float(model.sum_flows.abs().sum()) == 0.0  # consumed


def test_full_batch_em_increases_likelihood_and_save_roundtrip(tmp_path):
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=7)
    ins = [b.input(v, "categorical", n=3, card=4) for v in range(4)]
    p1 = b.product([b.sum([b.product(ins[:2])], n=3), b.sum([b.product(ins[2:])], n=3)])
    c = b.build(b.sum([p1]))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(200, 4))
    x[:, 1] = x[:, 0]  # structure to learn
    model = pccc.compile(c, backend="torch", dtype=torch.float64, device=DEVICE)
    opt = pccc.optim.FullBatchEM(model, pseudocount=0.1)
    lls = []
    for _ in range(5):
        for chunk in np.array_split(x, 4):
            model(torch.as_tensor(chunk)).sum().backward()
        opt.step()
        lls.append(log_likelihood(model.to_circuit(), x).mean())
    assert all(b >= a - 1e-9 for a, b in zip(lls, lls[1:]))  # EM never decreases (pc=0.1 ~ MAP)
    assert lls[-1] > log_likelihood(c, x).mean() + 0.1
    pccc.save(model, tmp_path / "trained.pcir")
    back = pccc.load(tmp_path / "trained.pcir")
    np.testing.assert_allclose(log_likelihood(back, x), log_likelihood(model.to_circuit(), x),
                               rtol=1e-9)
