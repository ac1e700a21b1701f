"""Circuits whose root vector holds ``n > 1`` nodes: ``[N, n]`` log-likelihoods at every level
and in every backend, per-root gradients, EM flows summed over the roots, plan text, ``.pccm``
files and ``pccc eval``.

The twin of a multi-root circuit is the circuit of one root ``r``: the same nodes under a
one-node product selecting node ``r`` of the root vector (:func:`one_root`). Its parameters
are the same keys, so flows and gradients compare key by key.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.reference import log_likelihood  # noqa: E402
from pccc.backends.reference.lowered import evaluate_any  # noqa: E402
from pccc.cli.main import main  # noqa: E402
from pccc.ir import Circuit, CircuitBuilder, VerifyError  # noqa: E402
from pccc.ir.circuit import ProductVector  # noqa: E402
from pccc.ir.parse_lowered import parse_any  # noqa: E402
from pccc.ir.plan_verify import verify_plan  # noqa: E402
from pccc.ir.printer import to_text  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.passes import compile_plan, run_pipeline  # noqa: E402
from tests import naive_torch  # noqa: E402
from tests.oracle import brute_force_marginal  # noqa: E402
from tests.strategies import circuits, data_for  # noqa: E402

# tiny tensors: one intra-op thread avoids OpenMP contention on small, busy machines
torch.set_num_threads(1)

F64 = torch.float64


def examples(n: int) -> settings:
    """Hypothesis settings of ``n`` examples (no deadline: these compile modules)."""
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

STAGES = ["canonicalize,group-blocks{block-size=4,min-block=2,tolerance=0.5}",
          "partition-layers", "layout-params"]


def multi_root(max_vars: int = 3, dists: tuple[str, ...] = ("categorical", "bernoulli",
                                                             "indicator"),
               kinds: tuple[str, ...] = ("sum", "sum", "product", "input")
               ) -> st.SearchStrategy[Circuit]:
    """Random circuits with a root vector of 2..4 nodes (mostly sums)."""
    return st.integers(2, 4).flatmap(lambda n: circuits(
        max_vars=max_vars, max_n=3, dists=dists, roots=n, root_kinds=kinds))


def one_root(c: Circuit, r: int) -> Circuit:
    """``c`` with node ``r`` of its root vector as its only root."""
    sel = ProductVector(1, (c.root,), np.array([[r]], np.int64))
    return Circuit(c.nodes + (sel,), c.params, c.num_vars, len(c.nodes))


def n_roots(c: Circuit) -> int:
    return c.nodes[c.root].n


def _by_key(model, flat: torch.Tensor, key: str) -> np.ndarray:
    return flat.detach().cpu().double()[torch.from_numpy(np.array(model.plan.param_map[key]))
                                        ].numpy()


def _grad(model, key: str) -> np.ndarray:
    p = model.input_raw if key in model.plan.input_param_keys else model.sum_logits
    if p.grad is None:
        return np.zeros(np.shape(model.plan.param_map[key]))
    return _by_key(model, p.grad, key)


def _flows(model, key: str) -> np.ndarray:
    """The EM statistics of parameter ``key``, in its source shape (categorical tables:
    counts per value; sum weights: edge flows)."""
    if key in model.plan.input_param_keys:
        return _by_key(model, model.input_counts, key)
    return _by_key(model, model.sum_flows, key)


def _stat_keys(c: Circuit) -> list[str]:
    """Keys whose EM statistics :func:`_flows` reads: sum weights and categorical tables."""
    out = set()
    for nd in c.nodes:
        if getattr(nd, "kind", "") == "sum" or getattr(nd, "dist", "") == "categorical":
            out.add(nd.param)
    return sorted(out)


# ----------------------------------------------------------------------- reference
@examples(12)
@given(data=st.data())
def test_reference_per_root_equals_brute_force(data):
    c = data.draw(multi_root(dists=("categorical", "bernoulli", "indicator", "binomial")))
    x = data.draw(data_for(c, n_rows=3, missing_prob=0.4))
    ll = log_likelihood(c, x)
    assert ll.shape == (len(x), n_roots(c))
    for r in range(n_roots(c)):
        want = [brute_force_marginal(one_root(c, r), row) for row in x]
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(ll[:, r], np.log(want), rtol=1e-9, atol=1e-12)


def test_one_root_keeps_the_shape_n():
    b = CircuitBuilder(rng=0)
    s = b.sum([b.product([b.input(0, "bernoulli", n=2), b.input(1, "bernoulli", n=2)])])
    x = np.array([[0, 1], [1, -1]])
    assert log_likelihood(b.build(s, num_vars=2), x).shape == (2,)


@examples(10)
@given(data=st.data())
def test_every_level_and_plan_text(data):
    c = data.draw(multi_root(dists=("categorical", "indicator", "gaussian")))
    x = data.draw(data_for(c, n_rows=4))
    want = log_likelihood(c, x)
    ir = c
    for stage in STAGES:
        ir = run_pipeline(ir, stage)
        got = evaluate_any(ir, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        text = to_text(ir)
        back = parse_any(text)
        assert back == ir and to_text(back) == text
    assert ir.num_roots == n_roots(c)
    assert f"num_roots={n_roots(c)} " in to_text(ir).splitlines()[1]
    verify_plan(ir)


def test_single_root_plan_text_has_no_num_roots_and_verifier_checks_roots():
    import dataclasses

    b = CircuitBuilder(rng=1)
    s = b.sum([b.product([b.input(0, "bernoulli", n=2), b.input(1, "bernoulli", n=2)])], n=3)
    plan = compile_plan(b.build(s, num_vars=2))
    single = dataclasses.replace(plan, num_roots=1)
    head = to_text(single).splitlines()[1]
    assert "num_roots" not in head  # dumps of one root read as before
    assert parse_any(to_text(single)).num_roots == 1
    with pytest.raises(VerifyError, match="at least one root"):
        verify_plan(dataclasses.replace(plan, num_roots=0))
    with pytest.raises(VerifyError, match="never written"):
        verify_plan(dataclasses.replace(plan, num_roots=plan.num_node_slots))


# --------------------------------------------------------------------------- torch
def _loss_weights(data, shape):
    """Upstream gradients ``[N, n]``: the same for every root of an example (one backward
    pass) or not (gradients and EM statistics in passes of their own)."""
    if data.draw(st.booleans()):
        return np.repeat(np.random.default_rng(0).uniform(0.5, 1.5, (shape[0], 1)), shape[1], 1)
    return np.random.default_rng(1).normal(size=shape)


@examples(10)
@given(data=st.data())
def test_torch_forward_gradients_and_flows(data):
    c = data.draw(multi_root(max_vars=3, dists=("categorical", "bernoulli", "binomial",
                                                "indicator", "gaussian")))
    x = data.draw(data_for(c, n_rows=5))
    n = n_roots(c)
    model = pccc.compile(c, dtype=F64)
    model.keep_elements = data.draw(st.booleans())
    ll = model(torch.as_tensor(x))
    want = log_likelihood(c, x)
    assert ll.shape == (len(x), n)
    np.testing.assert_array_equal(np.isneginf(ll.detach().numpy()), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(ll.detach().numpy()[fin], want[fin], rtol=1e-10, atol=1e-10)
    if not ll.requires_grad:  # (no parameters: indicators only)
        return
    g = _loss_weights(data, ll.shape)
    (ll * torch.as_tensor(g)).sum().backward()
    # gradients: naive autograd over the one-root circuits, weighted alike
    raw = naive_torch.raw_leaves(c)
    loss = 0.0
    singles = []
    for r in range(n):
        cr = one_root(c, r)
        ok = fin[:, r]
        if ok.any():
            loss = loss + (naive_torch.evaluate(cr, x[ok], raw) * torch.as_tensor(g[ok, r])).sum()
        single = pccc.compile(cr, dtype=F64)
        out = single(torch.as_tensor(x))
        if out.requires_grad:
            out.sum().backward()
        singles.append(single)
    if torch.is_tensor(loss) and loss.requires_grad:
        loss.backward()
    for key, leaf in raw.items():
        expect = np.zeros(leaf.shape) if leaf.grad is None else leaf.grad.numpy()
        np.testing.assert_allclose(_grad(model, key), expect, rtol=1e-9, atol=1e-10,
                                   err_msg=key)
    # EM statistics: every root with flow 1 per example, whatever g was
    for key in _stat_keys(c):
        np.testing.assert_allclose(_flows(model, key), sum(_flows(s, key) for s in singles),
                                   rtol=1e-9, atol=1e-10, err_msg=key)


def test_gradient_of_one_root_alone():
    b = CircuitBuilder(rng=2)
    p = b.product([b.input(0, "categorical", n=3, card=3), b.input(1, "bernoulli", n=3)])
    c = b.build(b.sum([p], n=3), num_vars=2)
    x = torch.tensor([[0, 1], [2, -1], [1, 0]])
    model, single = pccc.compile(c, dtype=F64), pccc.compile(one_root(c, 1), dtype=F64)
    model(x)[:, 1].sum().backward()
    single(x).sum().backward()
    for key in c.params:
        np.testing.assert_allclose(_grad(model, key), _grad(single, key), atol=1e-12)


@examples(8)
@given(data=st.data())
def test_minibatch_em_on_a_multi_root_module(data):
    c = data.draw(multi_root(dists=("categorical", "bernoulli")))
    x = data.draw(data_for(c, n_rows=6))
    model = pccc.compile(c, dtype=F64)
    model(torch.as_tensor(x)).mean().backward()
    MiniBatchEM(model, step_size=0.5, pseudocount=0.1).step()
    stepped = model.to_circuit()
    got = model(torch.as_tensor(x)).detach().numpy()
    want = log_likelihood(stepped, x)
    fin = np.isfinite(want)  # (product and input roots: their wrapper stays the identity)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------- .pccm, CLI
def _small(seed: int = 3, n: int = 3) -> Circuit:
    b = CircuitBuilder(rng=seed)
    p = b.product([b.input(0, "categorical", n=4, card=3), b.input(1, "bernoulli", n=4)])
    q = b.product([b.input(0, "categorical", n=2, card=3), b.input(1, "bernoulli", n=2)])
    return b.build(b.sum([p, q], n=n), num_vars=2)


X = np.array([[0, 1], [2, -1], [-1, 0], [1, 1], [2, 0]])


def test_pccm_round_trip(tmp_path):
    c = _small()
    model = pccc.compile(c, dtype=F64)
    model(torch.as_tensor(X)).sum().backward()
    MiniBatchEM(model, step_size=0.5, pseudocount=0.1).step()
    pccc.save(model, tmp_path / "m.pccm")
    back = pccc.load_module(tmp_path / "m.pccm")
    assert back.plan.num_roots == 3
    got = back(torch.as_tensor(X)).detach().numpy()
    assert got.shape == (len(X), 3)
    np.testing.assert_allclose(got, model(torch.as_tensor(X)).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(got, log_likelihood(model.to_circuit(), X), rtol=1e-12)


def test_eval_writes_n_columns_and_names_each_root(tmp_path, capsys):
    pccc.save(_small(), tmp_path / "c.pcir")
    pccc.save(pccc.compile(_small(), dtype=F64), tmp_path / "m.pccm")
    np.save(tmp_path / "x.npy", X)
    want = log_likelihood(_small(), X)
    runs = {"reference": ["c.pcir", "--backend", "reference"],
            "torch": ["c.pcir", "--backend", "torch", "--dtype", "float64"],
            "pccm": ["m.pccm"]}
    for name, args in runs.items():
        out = tmp_path / f"ll-{name}.npy"
        assert main(["eval", str(tmp_path / args[0]), *args[1:], "--data",
                     str(tmp_path / "x.npy"), "--batch-size", "2", "--out", str(out)]) == 0
        ll = np.load(out)
        assert ll.shape == (len(X), 3)
        np.testing.assert_allclose(ll, want, rtol=1e-10)
        lines = capsys.readouterr().out.strip().splitlines()
        assert f"examples: {len(X)}" in lines
        for r in range(3):
            head, value = lines[-3 + r].split(": mean log-likelihood: ")
            assert head == f"root {r}"
            assert float(value) == pytest.approx(want[:, r].mean(), rel=1e-10)


# -------------------------------------------------------------------------- Triton
triton_case = pytest.mark.usefixtures("triton_cache")
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@pytest.mark.interpret
@triton_case
@examples(4)
@given(data=st.data())
def test_triton_equals_torch(data):
    pytest.importorskip("triton")
    c = data.draw(multi_root(dists=("categorical", "bernoulli", "gaussian")))
    x = data.draw(data_for(c, n_rows=5))
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32",
                       flows_in_nodes=data.draw(st.booleans()))
    ref = pccc.compile(c, dtype=F64)
    tri.param_grads = data.draw(st.booleans())
    xt = torch.as_tensor(x)
    ll = tri(xt.to(DEV))
    want = log_likelihood(c, x)
    assert ll.shape == want.shape
    fin = np.isfinite(want)
    np.testing.assert_allclose(ll.detach().cpu().double().numpy()[fin], want[fin], rtol=1e-4,
                               atol=1e-4)
    g = _loss_weights(data, ll.shape)
    (ll * torch.as_tensor(g, device=ll.device, dtype=ll.dtype)).sum().backward()
    (ref(xt) * torch.as_tensor(g)).sum().backward()
    if tri.param_grads:
        for a, b in ((tri.sum_logits, ref.sum_logits), (tri.input_raw, ref.input_raw)):
            ga = a.grad if a.grad is not None else torch.zeros_like(a)
            gb = b.grad if b.grad is not None else torch.zeros_like(b)
            np.testing.assert_allclose(ga.cpu().double().numpy(), gb.numpy(), rtol=1e-4,
                                       atol=1e-4)
    np.testing.assert_allclose(tri.sum_flows.cpu().double().numpy(), ref.sum_flows.numpy(),
                               rtol=1e-4, atol=1e-4)
    MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
    MiniBatchEM(ref, step_size=0.5, pseudocount=0.1).step()
    np.testing.assert_allclose(tri.current_plan().params, ref.current_plan().params,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tri.current_plan().input_params,
                               ref.current_plan().input_params, rtol=1e-4, atol=1e-4)


@pytest.mark.interpret
@triton_case
def test_triton_pccm_and_external_inputs(tmp_path):
    pytest.importorskip("triton")
    c = _small(seed=4, n=2)
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    pccc.save(tri, tmp_path / "t.pccm")
    back = pccc.load_module(tmp_path / "t.pccm", device=DEV)
    assert back.backend_name == "triton"
    got = back(torch.as_tensor(X).to(DEV)).detach().cpu().double().numpy()
    np.testing.assert_allclose(got, log_likelihood(c, X), rtol=1e-5, atol=1e-5)
    # input log-values fed from outside (the torch backend's function on Triton buffers)
    ref = pccc.compile(c, dtype=F64)
    logp = torch.randn(len(X), len(ref.input_nodes()), dtype=F64)
    g = torch.tensor(np.random.default_rng(2).normal(size=(len(X), 2)))
    lt = logp.float().to(DEV).requires_grad_()
    lr = logp.clone().requires_grad_()
    (tri(torch.as_tensor(X).to(DEV), input_logp=lt) * g.float().to(DEV)).sum().backward()
    (ref(torch.as_tensor(X), input_logp=lr) * g).sum().backward()
    np.testing.assert_allclose(lt.grad.cpu().double().numpy(), lr.grad.numpy(), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(tri.sum_logits.grad.cpu().double().numpy(),
                               ref.sum_logits.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.interpret
@triton_case
def test_triton_loss_of_mixed_signs_and_one_root():
    pytest.importorskip("triton")
    c = _small(seed=6, n=3)
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ref = pccc.compile(c, dtype=F64)
    g = np.random.default_rng(3).normal(size=(len(X), 3))
    g[:, 0] = 0.0  # a root with no gradient: the EM flows still count it
    for loss in (lambda m, ll: (ll * torch.as_tensor(g, device=ll.device, dtype=ll.dtype)).sum(),
                 lambda m, ll: -ll[:, 1].mean()):
        for m in (tri, ref):
            m.zero_grad()
            m.zero_flows()
            loss(m, m(torch.as_tensor(X).to(m.device))).backward()
        for a, b in ((tri.sum_logits, ref.sum_logits), (tri.input_raw, ref.input_raw),
                     (tri.sum_flows, ref.sum_flows)):
            got = a.grad if isinstance(a, torch.nn.Parameter) else a
            want = b.grad if isinstance(b, torch.nn.Parameter) else b
            np.testing.assert_allclose(got.detach().cpu().double().numpy(), want.numpy(),
                                       rtol=1e-4, atol=1e-5)
