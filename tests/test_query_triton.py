"""``pccc.query`` on Triton modules under ``TRITON_INTERPRET=1``: conditionals from the Triton
forward and flows kernels, MPE and samples through the torch module of the same plan, against
brute-force enumeration (float32 modules: 2e-4)."""

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
from pccc.optim import MiniBatchEM  # noqa: E402
from tests.oracle import consistent, joint_table  # noqa: E402
from tests.strategies import circuits, data_for, deterministic_circuits  # noqa: E402
from tests.test_query import (  # noqa: E402
    assert_logs_close,
    brute_conditional,
    check_samples,
    fixed_circuit,
)
from tests.test_query_cases import gated_circuit  # noqa: E402

pytest.importorskip("triton")
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


def test_samples_fit_the_distribution():
    c = fixed_circuit()
    model = triton_model(c)
    check_samples(c, query.sample(model, 2000, seed=0).cpu().numpy(), np.full(3, -1))
    row = np.array([-1, 1, -1])
    check_samples(c, query.sample(model, 2000, evidence=row, seed=1).cpu().numpy(), row)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_the_triton_node_values_are_the_torch_twins(data):
    """Sampling decodes the Triton forward's node buffer with the torch layers of the same
    plan: the two forward passes give every slot the decoding reads the same value."""
    c = data.draw(circuits(max_vars=4))
    x = torch.from_numpy(data.draw(data_for(c, n_rows=5, missing_prob=0.4)))
    model = triton_model(c)
    twin = tq.twin(model)
    _, logw, node = tq.forward(model, x.to(DEV))
    _, logw2, node2 = tq.forward(twin, x.to(DEV))
    live = torch.ones(node.shape[0], dtype=torch.bool)
    live[twin.dead_nodes.cpu()] = False
    assert_logs_close(node[live].cpu().double().numpy(), node2[live].cpu().double().numpy(), TOL)
    assert_logs_close(logw.cpu().double().numpy(), logw2.cpu().double().numpy(), TOL)


@pytest.mark.heavy  # 20 s and more under the interpreter: make test-heavy
@settings(max_examples=5, deadline=None)
@given(st.data())
def test_samples_of_random_circuits_fit_the_distribution(data):
    """The Triton forward's node values, decoded by the torch module of the same plan."""
    c = data.draw(circuits(max_vars=3))
    states, p = joint_table(c)
    pick = states[data.draw(st.sampled_from(np.flatnonzero(p > 0).tolist()))]
    row = np.where(np.arange(c.num_vars) % 2 == 0, -1, pick)
    draws = query.sample(triton_model(c), 4000, evidence=row, seed=2).cpu().numpy()
    check_samples(c, draws, row)


def test_queries_follow_trained_parameters_and_impossible_evidence():
    """After an EM step the queries read the module's current parameters (the torch module
    that decodes gets them too); impossible evidence gives -inf, never NaN."""
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
