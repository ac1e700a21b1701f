"""The distribution registry: every registered distribution has a torch family, a backend
without one refuses it by name, the plan verifier checks new families by the registry, and
the structure generators build circuits over the image distributions that compile and match
the reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pccc
from pccc import structures
from pccc.backends.reference import log_likelihood
from pccc.ir import CircuitBuilder, PcccError, VerifyError, dists, is_normalized, verify
from pccc.ir.plan_verify import verify_plan
from pccc.passes import compile_plan

torch.set_num_threads(1)


def test_every_registered_distribution_has_a_torch_family():
    from pccc.backends.torch import families

    assert set(dists.names()) <= set(dists.implemented("torch"))
    assert families.family("masked_categorical").counts
    assert not families.family("discrete_logistic").counts


def test_a_backend_without_a_distribution_refuses_it_by_name():
    with pytest.raises(PcccError, match="nowhere backend: no implementation of input "
                                        "distribution 'discrete_logistic'"):
        dists.implementation("nowhere", "discrete_logistic")
    with pytest.raises(PcccError, match=r"'masked_categorical' \(it has: categorical\)"):
        dists.refuse_missing("x", ["categorical", "masked_categorical"], ["categorical"])
    dists.refuse_missing("x", ["categorical"], ["categorical", "gaussian"])
    with pytest.raises(KeyError, match="unknown distribution"):
        dists.implements("torch", "no-such-distribution")


def _mixed():
    b = CircuitBuilder(rng=0)
    a = b.input(0, "discrete_logistic", n=2, card=6, low=0.0, high=1.0)
    c = b.input(1, "masked_categorical", n=2, card=3, mask=(1, 1, 0, 0, 1, 1))
    return b.build(b.sum([b.product([a, c])], n=1), num_vars=2)


def test_triton_has_a_kernel_for_every_registered_distribution():
    pytest.importorskip("triton")
    from pccc.backends import triton as tb

    assert set(dists.names()) <= set(tb.INPUT_DISTS)
    dists.refuse_missing("triton", [ly.dist for ly in compile_plan(_mixed()).input_layers],
                         tb.INPUT_DISTS)


def test_plan_verifier_checks_the_new_layers():
    import dataclasses

    plan = compile_plan(_mixed())
    verify_plan(plan)
    i = next(k for k, ly in enumerate(plan.input_layers) if ly.dist == "masked_categorical")
    ly = plan.input_layers[i]
    bad = dataclasses.replace(ly, attrs=(("card", 3), ("mask", (1, 1, 0, 0))))
    layers = plan.input_layers[:i] + (bad,) + plan.input_layers[i + 1:]
    with pytest.raises(VerifyError, match="masked_categorical"):
        verify_plan(dataclasses.replace(plan, input_layers=layers))
    j = next(k for k, ly in enumerate(plan.input_layers) if ly.dist == "discrete_logistic")
    bad = dataclasses.replace(plan.input_layers[j], param_size=3)
    layers = plan.input_layers[:j] + (bad,) + plan.input_layers[j + 1:]
    with pytest.raises(VerifyError, match="param_size"):
        verify_plan(dataclasses.replace(plan, input_layers=layers))


def _check(c, x):
    verify(c)
    assert is_normalized(c)
    got = pccc.compile(c, backend="torch", dtype=torch.float64)(torch.as_tensor(x))
    np.testing.assert_allclose(got.detach().numpy(), log_likelihood(c, x), rtol=1e-10)


@pytest.mark.parametrize("spec", [
    structures.InputSpec.parse("discrete_logistic", card=5, low=-1.0, high=1.0),
    structures.InputSpec.parse("masked_categorical", card=5, mask=[1, 1, 1, 0, 1]),
    structures.InputSpec.parse("masked_categorical", card=5,
                               mask=np.tril(np.ones((6, 5), np.int64))[:, ::-1] | np.eye(6, 5,
                                                                                         dtype=int)),
])
def test_generators_take_the_image_distributions(spec):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(40, 6))
    if spec.dist == "masked_categorical":  # values each variable's mask allows
        rows = (np.array(spec.masks) if spec.masks else np.tile(dict(spec.attrs)["mask"], (6, 1)))
        x = np.stack([rng.choice(np.flatnonzero(rows[v]), 40) for v in range(6)], axis=1)
    _check(structures.HCLT(x, 4, input_dist=spec), x)
    _check(structures.PD((2, 3), 4, split_intervals=1, block_size=4, input_dist=spec), x)
    _check(structures.RAT_SPN(6, 4, 2, 2, input_dist=spec), x)


def test_generators_take_the_names_and_refuse_bad_hyperparameters():
    x = np.random.default_rng(2).integers(0, 4, size=(30, 3))
    c = structures.HCLT(x, 2, input_dist="discrete_logistic", num_cats=4)
    node = next(nd for nd in c.nodes if getattr(nd, "dist", "") == "discrete_logistic")
    assert node.attr_dict() == {"card": 4, "low": 0.0, "high": 4.0}
    with pytest.raises(ValueError, match="below high"):
        structures.InputSpec.parse("discrete_logistic", card=4, low=2.0, high=1.0)
    with pytest.raises(ValueError, match="allows no value"):
        structures.InputSpec.parse("masked_categorical", card=3, mask=[[1, 0, 0], [0, 0, 0]])


def test_plan_reference_reads_each_nodes_own_mask_row():
    from pccc.backends.reference.plan_eval import plan_log_likelihood

    b = CircuitBuilder(rng=4)
    # two vectors with the same per-node masks: one L3 layer whose node j takes row j mod 2
    a = b.input(0, "masked_categorical", n=2, card=3, mask=(1, 0, 1, 0, 1, 1))
    a2 = b.input(0, "masked_categorical", n=2, card=3, mask=(1, 0, 1, 0, 1, 1))
    c = b.input(1, "discrete_logistic", n=4, card=4, low=0.0, high=2.0)
    s = b.sum([a, a2], n=4)
    circuit = b.build(b.sum([b.product([s, c])], n=1), num_vars=2)
    plan = compile_plan(circuit)
    assert sum(ly.dist == "masked_categorical" for ly in plan.input_layers) == 1
    x = np.array([[v, w] for v in range(3) for w in range(4)] + [[-1, 2], [1, -1]])
    np.testing.assert_allclose(plan_log_likelihood(plan, x), log_likelihood(circuit, x),
                               rtol=1e-12)


@pytest.mark.parametrize("dist", ["discrete_logistic", "masked_categorical"])
def test_queries_over_the_image_distributions_match_the_reference(dist):
    from pccc.backends.reference import queries as ref_queries
    from pccc.query import conditional, mpe

    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(30, 4))
    spec = structures.InputSpec.parse(dist, card=5, mask=[1, 1, 1, 1, 0] if dist ==
                                      "masked_categorical" else None)
    c = structures.HCLT(x, 3, input_dist=spec)
    model = pccc.compile(c, backend="torch", dtype=torch.float64)
    e = x[:6].copy()
    e[:, 1] = e[:, 3] = -1
    got, lp = mpe(model, torch.as_tensor(e))
    want, want_lp = ref_queries.mpe(c, e)
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-12)
    cond = np.exp(conditional(model, torch.as_tensor(e)).numpy())
    np.testing.assert_allclose(cond.sum(axis=-1), 1.0, rtol=1e-12)
    if dist == "masked_categorical":
        assert np.all(cond[:, [1, 3], 4] == 0)


@pytest.mark.parametrize("spec", [
    structures.InputSpec.parse("discrete_logistic", card=4, low=-1.0, high=1.0),
    structures.InputSpec.parse("masked_categorical", card=4, mask=[1, 0, 1, 1]),
])
def test_jpc_writes_the_image_distributions_as_the_same_tables(spec, tmp_path):
    """A .jpc file holds them as categorical tables: every joint assignment of the read-back
    circuit has the log-likelihood of the original (brute force over 4^3 rows)."""
    import itertools

    import pccc

    c = structures.RAT_SPN(3, 2, 1, 2, input_dist=spec, seed=3)
    pccc.save(c, tmp_path / "c.jpc")
    back = pccc.load(tmp_path / "c.jpc")
    rows = np.array(list(itertools.product(range(4), repeat=3)))
    want, got = log_likelihood(c, rows), log_likelihood(back, rows)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.isclose(np.logaddexp.reduce(want), 0.0, atol=1e-12)
