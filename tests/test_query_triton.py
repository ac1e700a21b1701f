"""``pccc.query`` on Triton modules under ``TRITON_INTERPRET=1``, against brute-force
enumeration and the torch module of the same plan (float32 modules: 2e-4): conditionals from
the Triton forward and flows kernels; MPE from the max-product forward and argmax top-down
kernels; samples from the module's forward kernels and the Gumbel-max top-down kernels
(``backends/triton/queries.py``), fitted to the enumerated distribution within a
total-variation bound (fixed seeds)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc import query  # noqa: E402
from pccc.backends.torch import queries as tq  # noqa: E402
from pccc.ir.errors import PcccError  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from tests.oracle import consistent, joint_table, max_product_value, probability  # noqa: E402
from tests.strategies import circuits, data_for, deterministic_circuits  # noqa: E402
from tests.test_query import (  # noqa: E402
    assert_logs_close,
    brute_conditional,
    check_samples,
    fixed_circuit,
)
from tests.test_query_cases import gated_circuit, gaussian_circuit  # noqa: E402

pytest.importorskip("triton")
from pccc.backends.triton import queries as trq  # noqa: E402

pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
TOL = 2e-4


def triton_model(c):
    return pccc.compile(c, backend="triton", device=DEV)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_conditionals_match_brute_force(data):
    c = data.draw(circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.5))
    got = query.conditional(triton_model(c), torch.from_numpy(x).to(DEV))
    assert got.device.type == DEV and got.dtype == torch.float32
    assert_logs_close(got.cpu().double().numpy(), brute_conditional(c, x, got.shape[2]), TOL)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_mpe_is_exact_on_deterministic_circuits(data):
    c = data.draw(deterministic_circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.6))
    rows, ll = query.mpe(triton_model(c), x)
    states, p = joint_table(c)
    with np.errstate(divide="ignore"):
        best = np.log([p[consistent(states, row)].max() for row in x])
    assert_logs_close(ll.cpu().double().numpy(), best, TOL)
    obs = x != -1
    np.testing.assert_array_equal(rows.cpu().numpy()[obs], x[obs])
    live = np.isfinite(best)
    with np.errstate(divide="ignore"):
        exact = np.log([probability(c, row) for row in rows.cpu().numpy()[live]])
    np.testing.assert_allclose(exact, best[live], rtol=0, atol=TOL)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_mpe_matches_the_torch_decoding(data):
    """On any circuit the kernels' completion scores what the torch module's max-product
    decoding of the same plan scores (its exact ``log p``), at least the max-product
    value."""
    c = data.draw(circuits(max_vars=4))
    x = data.draw(data_for(c, n_rows=4, missing_prob=0.5))
    model = triton_model(c)
    rows, ll = query.mpe(model, x)
    _, want = query.mpe(tq.twin(model), x)
    got = ll.cpu().double().numpy()
    assert_logs_close(got, want.cpu().double().numpy(), TOL)
    done = rows.cpu().numpy()
    with np.errstate(divide="ignore"):
        floor = np.log([max_product_value(c, row) for row in x])
        exact = np.log([probability(c, row) if (row >= 0).all() else 0.0 for row in done])
    assert_logs_close(exact, got, TOL)
    live = np.isfinite(floor)
    assert np.all(got[live] >= floor[live] - TOL)


@pytest.mark.parametrize("semiring", ["sum", "max"])
@settings(max_examples=5, deadline=None)
@given(st.data())
def test_the_layer_kernel_in_either_semiring(semiring, data):
    """``sum_layer`` over the same input values gives every live node what the torch module
    of the plan gives in that semiring, and the root its max-product value (max)."""
    c = data.draw(circuits(max_vars=4))
    x = torch.from_numpy(data.draw(data_for(c, n_rows=5, missing_prob=0.4))).to(DEV)
    model = triton_model(c)
    twin = tq.twin(model)
    _, logw, vals = tq.forward_inputs(model, x, semiring)
    node = torch.full((model.plan.num_node_slots, 16), -math.inf, device=DEV)
    node[0] = 0.0
    for ly, v in zip(model.plan.input_layers, vals):
        node[ly.node_start: ly.node_start + ly.n, : len(x)] = v
    trq.layer_forward(model, node, logw.float().contiguous(), len(x), semiring)
    _, _, want = tq.forward(twin, x, semiring)
    live = torch.ones(node.shape[0], dtype=torch.bool)
    live[twin.dead_nodes.cpu()] = False
    got = node[:, : len(x)].cpu().double().numpy()
    assert_logs_close(got[live.numpy()], want[live].cpu().double().numpy(), TOL)
    if semiring == "max":
        with np.errstate(divide="ignore"):
            best = np.log([max_product_value(c, row) for row in x.cpu().numpy()])
        assert_logs_close(got[model.root_slot], best, TOL)


def test_samples_fit_the_distribution():
    c = fixed_circuit()
    model = triton_model(c)
    check_samples(c, query.sample(model, 1200, seed=0).cpu().numpy(), np.full(3, -1))
    row = np.array([-1, 1, -1])
    check_samples(c, query.sample(model, 1200, evidence=row, seed=1).cpu().numpy(), row)


def test_samples_repeat_with_their_seed_whatever_the_batching():
    """Sample ``i`` of a seed is the same draw in batches of any size (the kernels' random
    counters name the sample, not the launch)."""
    model = triton_model(fixed_circuit())
    a = query.sample(model, 40, seed=7)
    assert a.dtype == torch.int64 and a.shape == (40, 3)
    assert torch.equal(a, query.sample(model, 40, seed=7, batch_size=17))
    assert not torch.equal(a, query.sample(model, 40, seed=8))
    row = np.array([-1, 0, -1])
    b = query.sample(model, 40, evidence=row, seed=3, batch_size=25).cpu().numpy()
    assert (b[:, 1] == 0).all() and (b >= 0).all()


def test_edge_cases():
    """No evidence, everything observed, impossible evidence (MPE keeps the missing values
    and scores -inf; sampling refuses, naming the row)."""
    c = fixed_circuit()
    model = triton_model(c)
    _, p = joint_table(c)
    rows, ll = query.mpe(model, np.full((2, 3), -1))
    assert float(ll[0]) >= math.log(p.max()) - 1.0  # (not a deterministic circuit)
    assert float(ll[0]) == pytest.approx(math.log(probability(c, rows[0].cpu().numpy())),
                                         abs=TOL)
    assert torch.equal(rows[0], rows[1]) and (rows >= 0).all()
    x = np.array([[0, 1, 2], [2, 0, 1]])
    rows, ll = query.mpe(model, x)
    np.testing.assert_array_equal(rows.cpu().numpy(), x)
    np.testing.assert_allclose(ll.cpu().double().numpy(),
                               np.log([probability(c, r) for r in x]), rtol=0, atol=TOL)
    np.testing.assert_array_equal(query.sample(model, 2, evidence=x, seed=0).cpu().numpy(), x)
    g = triton_model(gated_circuit())
    bad = np.array([[1, -1, -1], [0, -1, 2]])
    rows, ll = query.mpe(g, bad)
    assert math.isinf(float(ll[0])) and math.isfinite(float(ll[1]))
    np.testing.assert_array_equal(rows.cpu().numpy()[0], [1, -1, -1])
    with pytest.raises(PcccError, match="the evidence has probability 0"):
        query.sample(g, 3, evidence=bad[0], seed=0)
    with pytest.raises(PcccError, match="evidence row 0 has probability 0"):
        query.sample(g, 2, evidence=bad, seed=0)


def test_ties_go_to_the_first_largest():
    """Tied sum choices and tied leaf modes: the first largest, as the torch decoding picks."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder()
    x0 = b.input(0, "categorical", n=2, card=3, params=[[0.4, 0.4, 0.2]] * 2)
    x1 = b.input(1, "categorical", n=2, card=3, params=[[0.1, 0.45, 0.45]] * 2)
    c = b.build(b.sum([b.product([x0, x1], n=2)], weights=[[0.5, 0.5]]), num_vars=2)
    model = triton_model(c)
    x = np.array([[-1, -1], [2, -1], [-1, 0]])
    rows, ll = query.mpe(model, x)
    np.testing.assert_array_equal(rows.cpu().numpy(), [[0, 1], [2, 1], [0, 0]])
    twin_rows, _ = query.mpe(tq.twin(model), x)
    assert torch.equal(rows.cpu(), twin_rows.cpu())
    np.testing.assert_allclose(ll.cpu().double().numpy(),
                               np.log([probability(c, r) for r in rows.cpu().numpy()]),
                               rtol=0, atol=TOL)


def test_continuous_variables():
    """A Gaussian variable takes its mean in MPE and a normal draw when sampling."""
    model = triton_model(gaussian_circuit())
    rows, _ = query.mpe(model, np.array([[np.nan, np.nan], [0.0, np.nan]]))
    assert rows.dtype == torch.float64
    np.testing.assert_allclose(rows.cpu().numpy(), [[1.0, 3.0], [0.0, -2.0]], atol=1e-6)
    n = 4000
    draws = query.sample(model, n, evidence=np.array([0.0, np.nan]), seed=1).cpu().numpy()
    assert draws.dtype == np.float64 and (draws[:, 0] == 0).all()
    w = 0.24 / 0.31  # p(component 0 | X0 = 0) = 0.3 * 0.8 / (0.3 * 0.8 + 0.7 * 0.1)
    mean = w * -2 + (1 - w) * 3
    var = w * 5 + (1 - w) * 9.25 - mean**2
    assert abs(draws[:, 1].mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(draws[:, 1].var() - var) < 0.15 * var


@pytest.mark.heavy  # 20 s and more under the interpreter: make test-heavy
@settings(max_examples=5, deadline=None)
@given(st.data())
def test_samples_of_random_circuits_fit_the_distribution(data):
    """The Triton forward's node values, decoded by the Triton top-down kernels."""
    c = data.draw(circuits(max_vars=3))
    states, p = joint_table(c)
    pick = states[data.draw(st.sampled_from(np.flatnonzero(p > 0).tolist()))]
    row = np.where(np.arange(c.num_vars) % 2 == 0, -1, pick)
    draws = query.sample(triton_model(c), 4000, evidence=row, seed=2).cpu().numpy()
    check_samples(c, draws, row)


def test_queries_follow_trained_parameters_and_impossible_evidence():
    """After an EM step the queries read the module's current parameters; impossible
    evidence gives -inf, never NaN."""
    c = gated_circuit()
    model = triton_model(c)
    x = torch.tensor([[0, 1, -1], [-1, 0, 2], [0, -1, 1]])
    model(x.to(DEV)).sum().backward()
    MiniBatchEM(model, step_size=0.5, pseudocount=0.1).step()
    now = model.to_circuit()
    ref_post = query.conditional(now, x)
    post = query.conditional(model, x)
    assert_logs_close(post.cpu().double().numpy(), ref_post.numpy(), TOL)
    _, ll = query.mpe(model, x)
    _, ref_ll = query.mpe(now, x)
    np.testing.assert_allclose(ll.cpu().double().numpy(), ref_ll.numpy(), rtol=0, atol=TOL)
    bad = query.conditional(model, torch.tensor([[1, -1, -1]]))
    assert torch.isneginf(bad).all()
    assert math.isinf(float(query.mpe(model, np.array([[1, -1, -1]]))[1][0]))


@pytest.mark.heavy  # minutes under the interpreter: make test-heavy
def test_samples_of_wide_categoricals_fit_the_distribution():
    """256 joint states: the inverse-CDF draws of 16-value categoricals under a mixture of
    Gumbel-max choices, 20,000 samples within the total-variation bound."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=5)
    x0 = b.input(0, "categorical", n=4, card=16)
    x1 = b.input(1, "categorical", n=4, card=16)
    c = b.build(b.sum([b.product([b.sum([x0], n=3), b.sum([x1], n=3)], n=3)]), num_vars=2)
    model = triton_model(c)
    check_samples(c, query.sample(model, 20000, seed=4).cpu().numpy(), np.full(2, -1))


def build_query_kernels_for_sm90() -> None:
    """Compile every query kernel variant to PTX for an H100 (no GPU needed): the type and
    layout checks the interpreter does not make. Run without the interpreter (see below)."""
    from pccc.backends.triton import kernels_query as kq
    from tests.sm90 import compile_for_sm90

    p, i, b8 = "*fp32", "*i32", "*i8"
    part = {"children": i, "row": "i32", "neg": "i32", "node_start": i, "chunk_start": i,
            "param_start": i, "num_chunks": i}
    pick = {"node": p, "sel": b8, "logw": p, **part, "pair_row": i, "pair_col": i,
            "npairs": "i32", "stride": "i32", "seed": "i64", "col0": "i32"}
    leaf = {"table": p, "vars": "*i64", "miss": b8, "out": p, "node0": "i32", "pair_node": i,
            "pair_col": i, "npairs": "i32", "stride": "i32", "seed": "i64", "col0": "i32"}
    layer = {"node": p, "logw": p, **part, "batch": "i32", "stride": "i32"}
    builds = [(kq.sum_pick, pick, dict(B=16, C=64, F=2, NC=2, CP=64, BQ=32, SAMPLE=s))
              for s in (True, False)]
    builds += [(kq.leaf_pick, leaf, dict(K=k, KP=k, GAUSS=g, SAMPLE=s, BQ=32))
               for k, g, s in ((2, True, True), (2, True, False), (256, False, True),
                               (4, False, False))]
    builds += [(kq.sum_layer, layer, dict(B=16, C=16, F=3, NC=3, BP=16, BT=32, SEMIRING=r))
               for r in ("sum", "max")]
    compile_for_sm90(builds)


@pytest.mark.heavy  # an offline kernel build: make test-heavy
def test_query_kernels_build_for_a_gpu():
    from tests.sm90 import run_offline

    run_offline("tests.test_query_triton", "build_query_kernels_for_sm90")
