"""The registered ``triton`` backend (torch backend module + Triton sum layers) under
``TRITON_INTERPRET=1``: log-likelihoods vs ``plan_eval``; gradients and EM steps vs the torch
backend computing the same thing in float64."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.reference.plan_eval import plan_log_likelihood  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from tests.strategies import ALL_DISTS, circuits, data_for  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"



def _pair(c, precision="fp32", verify=True, **options):
    tri = pccc.compile(c, backend="triton", device=DEV, precision=precision, verify=verify,
                       **options)
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64, verify=verify)
    return tri, ref


def _grads_and_em(c, x, tol, weighted=False, verify=True, **options):
    """``weighted``: a loss that weighs examples unequally (EM flows need their own pass);
    ``verify=False`` for a circuit that is not smooth on purpose; ``options``: the Triton
    backend's."""
    tri, ref = _pair(c, verify=verify, **options)
    xt = torch.as_tensor(x)
    ll = tri(xt.to(DEV) if not xt.is_floating_point() else xt)
    np.testing.assert_allclose(ll.detach().cpu().numpy(), plan_log_likelihood(tri.plan, x),
                               rtol=tol, atol=tol)
    g = torch.linspace(0.5, 1.5, len(x)) if weighted else torch.full((len(x),), 1.0 / len(x))
    (-(ll * g.to(ll.device)).sum()).backward()
    (-(ref(xt) * g.double()).sum()).backward()
    for a, b in ((tri.sum_logits, ref.sum_logits), (tri.input_raw, ref.input_raw)):
        ga = a.grad if a.grad is not None else torch.zeros_like(a)
        gb = b.grad if b.grad is not None else torch.zeros_like(b)
        # small gradients: a tolerance to their scale, down to 1e-3 (below it, float32's
        # rounding of per-edge terms of order 1 whose sum is 0: -6e-8 against 1e-17 in a
        # circuit whose logit gradients are all 0)
        scale = float(gb.abs().max()) if gb.numel() else 0.0
        np.testing.assert_allclose(ga.cpu().double().numpy(), gb.numpy(), rtol=5 * tol,
                                   atol=5 * tol * min(1.0, max(scale, 1e-3)))
    MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
    MiniBatchEM(ref, step_size=0.5, pseudocount=0.1).step()
    wa = torch.exp(tri.log_weights()).detach().cpu().double().numpy()
    wb = torch.exp(ref.log_weights()).detach().numpy()
    real = tri.plan.param_group >= 0
    np.testing.assert_allclose(wa[real], wb[real], rtol=5 * tol, atol=5 * tol)
    np.testing.assert_allclose(tri.current_plan().input_params, ref.current_plan().input_params,
                               rtol=5 * tol, atol=5 * tol)  # input EM (on-device raw coords)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_random_circuits_match_torch_backend(data):
    c = data.draw(circuits(max_vars=4, dists=ALL_DISTS))
    x = data.draw(data_for(c, n_rows=5, missing_prob=0.3))
    _grads_and_em(c, x, 2e-4)


@pytest.mark.parametrize("weighted", [False, True])
def test_dense_tiles_match_torch_backend(weighted):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(37, 4))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(_dense_circuit(), x, 2e-4, weighted)


def test_mixed_fanin_blocks_share_a_kernel():
    """Two vectors of one layer whose products have 2 and 3 children: one kernel (fan-in 3,
    the narrow blocks' third child is padding, neither loaded nor scattered to)."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(2))
    leaves = [b.input(v, "categorical", n=32, card=5) for v in range(5)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=32)
    right = b.sum([b.product([leaves[2], leaves[3], leaves[4]])], n=32)
    c = b.build(b.sum([b.product([left, right])], n=1), num_vars=5)
    tri = pccc.compile(c, backend="triton", device=DEV)
    s = tri.executor.dp.schedule
    fanins = [sorted(s.parts[i].fanin for i in ids) for ids in s.layer_parts()]
    assert [2, 3] not in fanins and [3] in fanins, fanins
    rng = np.random.default_rng(9)
    x = rng.integers(0, 5, size=(23, 5))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted=True)


def test_rounded_fanins_share_kernels_and_keep_the_results():
    """Option ``round_fanin``: each partition's narrow fan-in goes up to a power of two, past
    its layer table's row where that is narrower (the kernels read no child past it): fewer
    sum kernel shapes than without, the same values, gradients and EM step as the float64
    torch module."""
    from pccc.structures import InputSpec, hclt_from_tree

    rng = np.random.default_rng(5)
    parent = np.array([-1] + [int(rng.integers(0, max(1, i // 3))) for i in range(1, 16)])
    c = hclt_from_tree(parent, 4, InputSpec.parse("categorical", card=3), seed=1)
    plain = pccc.compile(c, backend="triton", device=DEV).executor.dp.schedule
    rounded = pccc.compile(c, backend="triton", device=DEV,
                           round_fanin=True).executor.dp.schedule
    assert len(rounded.shapes()) < len(plain.shapes()), (rounded.shapes(), plain.shapes())
    for p, q in zip(plain.parts, rounded.parts):
        assert q.fanin >= p.fanin and (q.fanin & (q.fanin - 1) == 0 or q.fanin > 8), q.fanin
    x = rng.integers(0, 3, size=(19, 16))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted=True, round_fanin=True)


def test_wide_products_keep_their_own_kernel():
    """A layer mixing products of 10 and 9 children in one vector (the loop over children, not
    unrolled, with a padding child) with products of 2 and 3: the narrow blocks share one
    kernel, the wide one has its own. (Not smooth: the 9 children cover one variable less,
    which is what gives the wide block a padding child.)"""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(4))
    leaves = [b.input(v, "categorical", n=16, card=3) for v in range(15)]
    vecs = [b.sum([b.product(leaves[0:2])], n=16), b.sum([b.product(leaves[2:5])], n=16),
            b.sum([b.product(leaves[5:15]), b.product(leaves[6:15])], n=16)]
    c = b.build(b.sum([b.product(vecs)], n=1), num_vars=15)
    tri = pccc.compile(c, backend="triton", device=DEV, verify=False)
    s = tri.executor.dp.schedule
    fanins = [sorted(s.parts[i].fanin for i in ids) for ids in s.layer_parts()]
    assert [3, 10] in fanins, fanins
    rng = np.random.default_rng(10)
    x = rng.integers(0, 3, size=(17, 15))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted=True, verify=False)


def test_batch_size_change_reuses_kernels():
    tri, _ = _pair(_dense_circuit())
    rng = np.random.default_rng(4)
    for n in (3, 40, 17):
        x = rng.integers(0, 5, size=(n, 4))
        ll = tri(torch.as_tensor(x)).detach().cpu().numpy()
        np.testing.assert_allclose(ll, plan_log_likelihood(tri.plan, x), rtol=2e-4, atol=2e-4)
    assert tri.artifacts["kernels"].count("\nsum_fwd_") == len(
        {(p.block_size, p.chunk_size, p.max_chunks) for ly in tri.plan.sum_layers()
         for p in ly.partitions})


def test_cli_evaluator_with_missing_values():
    """``pccc eval --backend triton`` goes through this evaluator."""
    from pccc.cli.cmd_eval import evaluator

    c = _dense_circuit()
    rng = np.random.default_rng(5)
    x = rng.integers(0, 5, size=(9, 4))
    x[rng.random(x.shape) < 0.3] = -1
    got = evaluator(c, "triton", DEV)(x)  # default precision tf32: exact when interpreted
    tol = 2e-4 if DEV == "cpu" else 3e-3
    np.testing.assert_allclose(got, plan_log_likelihood(pccc.compile(c).plan, x), rtol=tol,
                               atol=tol)


def test_unrunnable_device_is_refused_in_one_line(monkeypatch):
    """Without the interpreter a CPU device is a user error (the CLI prints it, exit 2), and
    so is cuda on a machine without one: never Triton's own driver traceback."""
    from pccc.ir.errors import PcccError

    c = _dense_circuit(n=16)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(PcccError, match="TRITON_INTERPRET=1"):
        pccc.compile(c, backend="triton", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(PcccError, match="no CUDA device"):
            pccc.compile(c, backend="triton", device="cuda")


@pytest.mark.parametrize("weighted,small", [(False, False), (True, False), (True, True)])
def test_sibling_blocks_match_torch_backend(weighted, small):
    """A 96-node vector becomes two 64-row blocks over the same elements: their element flows
    are summed by one ``sum_eflow`` program before the scatter; or (``small``: parts below
    the ``small_part`` option's weights) every block scatters its own from ``sum_bwd``, ratios
    inline."""
    from pccc.passes.schedule_parts import (
        child_counts,
        children_table,
        read_keys,
        sibling_table,
        split_by_fanin,
    )

    c = _dense_circuit(n=96)
    plan = pccc.compile(c).plan
    prod, widest = None, 1
    for ly in plan.layers:
        if ly.__class__.__name__ == "ProductLayer":
            prod = ly
            continue
        for p in ly.partitions:
            table = children_table(prod, plan.num_node_slots)
            for _, blocks in split_by_fanin(p, child_counts(table)):
                widest = max(widest, sibling_table(read_keys(p, blocks)).shape[1])
    assert widest > 1
    opts = {"small_part": 1 << 30 if small else 0}
    parts = pccc.compile(c, backend="triton", device=DEV, **opts).executor.dp.schedule.parts
    assert all(p.small and p.G == 1 for p in parts) if small else any(p.G > 1 for p in parts)
    rng = np.random.default_rng(6)
    x = rng.integers(0, 5, size=(21, 4))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted, **opts)


@pytest.mark.parametrize("weighted", [False, True])
def test_blocks_with_and_without_siblings_in_one_layer(weighted):
    """A 96-node vector (two 64-row sibling blocks) and a 64-node vector (one block) over
    products of the same width share a layer and a kernel shape: the lone block's element
    flows come from ``sum_bwd`` itself, the siblings' from ``sum_eflow``. (Not decomposable:
    a product of ``right`` with itself gives the second vector's products the first's
    width.)"""
    from tests.test_schedule import sibling_circuit

    c = sibling_circuit()
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32", verify=False,
                       small_part=0)
    s = tri.executor.dp.schedule
    kinds = [sorted({(s.parts[i].tag, s.parts[i].G > 1) for i in ids})
             for ids in s.layer_parts()]
    assert any(len({g for _, g in k}) == 2 and len({t for t, _ in k}) == 1 for k in kinds), kinds
    rng = np.random.default_rng(8)
    x = rng.integers(0, 5, size=(19, 4))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted, verify=False, small_part=0)


def test_em_steps_and_stale_forward_match_torch_backend():
    """Three EM steps (flows accumulated over two batches each), a forward between a forward
    and its backward (the backward recomputes its own), and an optimizer step on the logits
    (the kernels' linear weights follow the parameter's version)."""
    c = _dense_circuit()
    tri, ref = _pair(c)
    rng = np.random.default_rng(8)
    for _ in range(3):
        for _ in range(2):
            x = torch.as_tensor(rng.integers(0, 5, size=(11, 4)))
            llt = tri(x)
            tri(torch.as_tensor(rng.integers(0, 5, size=(5, 4))))  # clobbers the buffers
            llt.mean().backward()
            ref(x).mean().backward()
        MiniBatchEM(tri, 0.3, 0.1).step()
        MiniBatchEM(ref, 0.3, 0.1).step()
    x = rng.integers(0, 5, size=(7, 4))
    np.testing.assert_allclose(tri(torch.as_tensor(x)).detach().cpu().numpy(),
                               ref(torch.as_tensor(x)).detach().numpy(), rtol=2e-4, atol=2e-4)
    for m in (tri, ref):
        m.zero_grad()
        m(torch.as_tensor(x)).sum().backward()
        torch.optim.SGD(m.parameters(), lr=0.05).step()
    np.testing.assert_allclose(tri(torch.as_tensor(x)).detach().cpu().numpy(),
                               ref(torch.as_tensor(x)).detach().numpy(), rtol=2e-4, atol=2e-4)


def test_wide_product_matches_torch_backend():
    """A product of 10 children (fan-in > 8: its kernels take 16-column batch tiles)."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(9))
    leaves = [b.input(v, "categorical", n=2, card=3) for v in range(10)]
    mid = b.sum([b.product(leaves), b.product(leaves[::-1])], n=2)
    c = b.build(b.sum([b.product([mid])], n=1), num_vars=10)
    assert max(ly.partitions[0].children.shape[1] for ly in pccc.compile(c).plan.product_layers()
               ) > 8
    rng = np.random.default_rng(10)
    x = rng.integers(0, 3, size=(19, 10))
    x[rng.random(x.shape) < 0.2] = -1
    _grads_and_em(c, x, 2e-4, weighted=True)


@pytest.mark.parametrize("n", [32, 96])
def test_em_without_parameter_gradients(n):
    """``param_grads = False``: backward leaves ``.grad`` unset and adds the EM statistics
    straight into the accumulators; EM over two batches is unchanged."""
    c = _dense_circuit(n=n)
    tri, ref = _pair(c)
    tri.param_grads = False
    rng = np.random.default_rng(11)
    for rows in (13, 6):
        x = rng.integers(0, 5, size=(rows, 4))
        x[rng.random(x.shape) < 0.2] = -1
        w = torch.linspace(0.5, 1.5, rows)  # EM flows do not depend on the loss's weights
        (tri(torch.as_tensor(x)) * w.to(DEV)).sum().backward()
        (ref(torch.as_tensor(x)) * w.double()).sum().backward()
    assert tri.sum_logits.grad is None and tri.input_raw.grad is None
    MiniBatchEM(tri, 0.4, 0.1).step()
    MiniBatchEM(ref, 0.4, 0.1).step()
    x = torch.as_tensor(rng.integers(0, 5, size=(9, 4)))
    np.testing.assert_allclose(tri(x).detach().cpu().numpy(), ref(x).detach().numpy(),
                               rtol=2e-4, atol=2e-4)


def test_trained_module_saves_and_reloads(tmp_path):
    """After EM on the Triton module, ``pccc.save`` (a ``.jpc`` of the trained parameters) and
    ``.pccm`` round trips give the module's log-likelihoods (read back by the reference)."""
    from pccc.backends.reference import log_likelihood

    c = _dense_circuit()
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    rng = np.random.default_rng(12)
    for _ in range(2):
        x = torch.as_tensor(rng.integers(0, 5, size=(10, 4)))
        tri(x).mean().backward()
        MiniBatchEM(tri, 0.5, 0.1).step()
    x = rng.integers(0, 5, size=(8, 4))
    want = tri(torch.as_tensor(x)).detach().cpu().numpy()
    pccc.save(tri, tmp_path / "t.jpc")
    np.testing.assert_allclose(log_likelihood(pccc.load(tmp_path / "t.jpc"), x), want,
                               rtol=1e-4, atol=1e-4)
    pccc.save(tri, tmp_path / "t.pccm")
    back = pccc.load_module(tmp_path / "t.pccm", backend="torch", dtype=torch.float64)
    np.testing.assert_allclose(back(torch.as_tensor(x)).detach().numpy(), want, rtol=1e-4,
                               atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_group_ids_from_runs_match_the_plan(data):
    """The per-weight groups rebuilt from the run table (the kernels keep no per-weight group
    id) are the plan's ``param_group``, padding -1 included."""
    c = data.draw(circuits(max_vars=4, max_n=4))
    tri = pccc.compile(c, backend="triton", device=DEV)
    want = np.where(tri.plan.param_group >= 0, tri.plan.param_group, -1)
    np.testing.assert_array_equal(tri.executor.dp.group_ids().cpu().numpy(), want)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_unnormalized_and_tied_categorical_tables(data):
    """Categorical inputs are read as ``log theta = raw + c`` (c per node): unnormalized rows,
    an all-zero row and tied rows give the float64 torch backend's log-likelihoods, after an
    EM step and after a gradient step on ``input_raw`` (which recomputes c)."""
    import dataclasses

    from pccc.backends import registry

    c = data.draw(circuits(max_vars=3, dists=["categorical"], tie_prob=0.6, max_card=4))
    plan = pccc.compile(c, backend="torch").plan
    q = np.array(plan.input_params, dtype=np.float64)
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    for ly in plan.input_layers:
        rows = np.unique(ly.param_start)
        for k, r in enumerate(rows):
            seg = slice(int(r), int(r) + ly.param_size)
            q[seg] = 0.0 if k == 0 and len(rows) > 2 else q[seg] * rng.uniform(0.3, 3.0)
    plan = dataclasses.replace(plan, input_params=q)
    tri = registry.get("triton")(plan, device=DEV)
    ref = registry.get("torch")(plan, device="cpu", dtype=torch.float64)
    x = data.draw(data_for(c, n_rows=6, missing_prob=0.3))
    xt = torch.as_tensor(x)

    def same() -> None:
        a = tri(xt.to(DEV)).detach().cpu().double().numpy()
        b = ref(xt).detach().numpy()
        np.testing.assert_allclose(np.where(np.isfinite(b), a, 0), np.where(np.isfinite(b), b, 0),
                                   rtol=2e-4, atol=2e-4)
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))

    same()
    for m in (tri, ref):
        m(xt.to(m.sum_logits.device)).mean().backward()
        MiniBatchEM(m, step_size=0.5, pseudocount=0.1).step()
    same()
    for m in (tri, ref):
        m.zero_grad()
        m(xt.to(m.sum_logits.device)).sum().backward()
        with torch.no_grad():
            m.input_raw.add_(torch.nan_to_num(m.input_raw.grad, 0.0), alpha=0.05)
    same()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 5), st.integers(1, 150)), min_size=1, max_size=12))
def test_group_tiles_give_back_every_weights_group(segments):
    """``group_tiles``: a 64-weight tile is one group id only when all its weights are real
    and of that group; every weight's group (padding -1) is recovered from the tables, and
    from the runs ``tile_runs`` cuts (each of one group, at most 64 long, padding left out)."""
    from pccc.backends.triton.runtime import group_tiles, tile_runs

    g = np.concatenate([np.full(n, v) for v, n in segments])
    tiles, mixed = group_tiles(g)
    start, length, group = tile_runs(tiles, mixed)
    assert (length >= 1).all() and (length <= 64).all()
    back = np.full(len(g), -1)
    for s0, ln, gr in zip(start, length, group):
        assert (back[s0: s0 + ln] == -1).all()  # runs do not overlap
        back[s0: s0 + ln] = gr
    np.testing.assert_array_equal(back, np.where(g >= 0, g, -1))
    per = np.where(tiles[:, None] <= -2, mixed[np.maximum(-2 - tiles, 0)], tiles[:, None])
    np.testing.assert_array_equal(per.reshape(-1)[: len(g)], g)
    assert (per.reshape(-1)[len(g):] == -1).all()
    full = np.concatenate([g, np.full(-len(g) % 64, -1)]).reshape(-1, 64)
    np.testing.assert_array_equal(tiles >= 0, (full == full[:, :1]).all(axis=1) & (full[:, 0] >= 0))


def test_input_raw_with_new_storage_is_read():
    """Categorical tables are read from ``input_raw`` itself: after ``input_raw.data`` is
    replaced (new storage, then ``params_changed``), the kernels read the new values."""
    c = _dense_circuit()
    tri, ref = _pair(c)
    x = torch.as_tensor(np.random.default_rng(2).integers(0, 5, size=(9, 4)))
    tri(x)  # kernels (and, on a GPU, a CUDA graph) bound to the first storage
    for m in (tri, ref):
        new = m.input_raw.detach().clone()
        new[::3] += 0.7
        m.input_raw.data = new
    tri.params_changed()
    np.testing.assert_allclose(tri(x).detach().cpu().numpy(), ref(x).detach().numpy(),
                               rtol=2e-4, atol=2e-4)


def test_second_backward_of_one_forward():
    """The backward pass overwrites the node buffer's sum rows with its flow ratios: a second
    backward of the same forward (``retain_graph``) recomputes that forward and gives the
    same gradients."""
    c = _dense_circuit(n=96)
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    x = torch.as_tensor(np.random.default_rng(4).integers(0, 5, size=(13, 4)))
    ll = tri(x)
    ll.sum().backward(retain_graph=True)
    first = tri.sum_logits.grad.clone()
    tri.zero_grad()
    ll.sum().backward()
    np.testing.assert_allclose(tri.sum_logits.grad.cpu().numpy(), first.cpu().numpy(),
                               rtol=1e-5, atol=1e-6)
