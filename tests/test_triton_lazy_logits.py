"""The Triton module keeps no sum logits in EM-only training: an EM step with
``param_grads`` False updates the kernels' linear weights alone and drops the logits, and the
first read writes them from those weights (``TritonExecutor.materialize``). Checked against an
oracle computed on the host from the plan's groups: ``log w`` where the weight's group has a
positive total, 0 elsewhere (padding included); and against training that reads the logits
after every step (the reads change nothing the kernels compute)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from tests.strategies import circuits, data_for  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]


def _oracle(m) -> torch.Tensor:
    """The logits of the kernels' weights, from the plan's per-weight groups (numpy); the
    logarithm taken on the module's device (CUDA's and the host's float32 log differ in the
    last bit)."""
    w = m.executor._w.detach()
    g = np.asarray(m.plan.param_group)
    wn = w.cpu().double().numpy()
    tot = np.zeros(len(m.plan.group_size) + 1)
    np.add.at(tot, np.where(g >= 0, g, len(tot) - 1), np.where(g >= 0, wn, 0.0))
    live = torch.as_tensor((g >= 0) & (tot[np.maximum(g, 0)] > 0)).to(w.device)
    return torch.where(live, torch.log(torch.where(live, w, 1.0)), 0.0).cpu()


def _kept(m) -> int:
    """How many logits the module holds in memory now (without reading them through an
    accessor)."""
    p = m._parameters["sum_logits"]
    assert p.shape == (len(m.plan.params),)
    return p.untyped_storage().nbytes() // 4 if p.numel() else 0


def _train(m, x, steps: int, read: bool) -> list[torch.Tensor]:
    """EM-only steps on ``x``; the kernels' weights after each (``read``: the logits and the
    state are read after every step too)."""
    em = MiniBatchEM(m, step_size=0.4, pseudocount=0.1)
    xd = torch.as_tensor(x).to(DEV)
    m.param_grads = False
    out = []
    for _ in range(steps):
        m(xd).mean().backward()
        em.step()
        m.zero_grad()
        assert _kept(m) == 1  # the step dropped them (one float left)
        if read:
            torch.testing.assert_close(m.sum_logits.detach().cpu(), _oracle(m), rtol=0, atol=0)
            m.state_dict()
        out.append(m.executor._w.detach().cpu().clone())
    return out


@settings(max_examples=2, deadline=None)
@given(st.data())
def test_logits_are_written_from_the_weights_when_read(data):
    pytest.importorskip("triton")
    c = data.draw(circuits(max_vars=4, max_n=3))
    x = data.draw(data_for(c, n_rows=9, missing_prob=0.2))
    m = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    assert _kept(m) == 1  # a new module holds one float of them before a read
    # the first read: the initial parametrization, and the weights it gives are the plan's
    first = m.sum_logits.detach().cpu()
    assert _kept(m) == len(m.plan.params)
    torch.testing.assert_close(first, _oracle(m), rtol=0, atol=0)
    quiet = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    got, want = _train(m, x, 3, read=True), _train(quiet, x, 3, read=False)
    for a, b in zip(got, want):  # reading changes nothing the kernels compute
        assert torch.equal(a, b)
    torch.testing.assert_close(quiet.sum_logits.detach().cpu(), _oracle(quiet), rtol=0, atol=0)
    # the written logits give the kernels' weights back (softmax times the normalizer)
    real = torch.as_tensor(np.asarray(m.plan.param_group) >= 0)
    lw = m.log_weights().detach().cpu()
    w = m.executor._w.detach().cpu()
    torch.testing.assert_close(torch.exp(lw[real]), w[real], rtol=1e-5, atol=1e-7)


def test_gradients_after_em_only_training_see_the_trained_weights():
    """Switching gradients back on writes the logits before the pass that needs them; a step
    with gradients keeps them in step with the weights (written by the EM kernel)."""
    pytest.importorskip("triton")
    c = _dense_circuit()
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.integers(0, 5, (12, 4)))
    m = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64)
    _train(m, x, 2, read=False)
    m.param_grads = True
    m(x.to(DEV)).mean().backward()
    assert _kept(m) == len(m.plan.params) and m.sum_logits.grad is not None
    # the float64 torch module at the trained weights gives the same gradient
    with torch.no_grad():
        ref.sum_logits.copy_(m.sum_logits.detach().double().cpu())
        ref.sum_norm.copy_(m.sum_norm.detach().double().cpu())
        ref.input_raw.copy_(m.input_raw.detach().double().cpu())
        ref.input_shift.copy_(m.input_shift.detach().double().cpu())
    ref.params_changed()
    ref(x).mean().backward()
    real = torch.as_tensor(np.asarray(m.plan.param_group) >= 0)
    torch.testing.assert_close(m.sum_logits.grad.cpu().double()[real],
                               ref.sum_logits.grad[real], rtol=1e-4, atol=1e-6)
    MiniBatchEM(m, step_size=0.4, pseudocount=0.1).step()
    assert _kept(m) == len(m.plan.params)  # kept, and written by the step
    torch.testing.assert_close(m.sum_logits.detach().cpu(), _oracle(m), rtol=1e-6, atol=1e-6)


def test_a_written_normalizer_reaches_the_weights_while_logits_are_owed():
    """Writing ``sum_norm`` (no logits read) still rescales the weights the kernels use."""
    pytest.importorskip("triton")
    c = _dense_circuit()
    x = torch.as_tensor(np.random.default_rng(2).integers(0, 5, (6, 4)))
    m = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    _train(m, x, 1, read=False)
    old = m.executor._w.detach().cpu().clone()
    assert _kept(m) == 1
    with torch.no_grad():
        m.sum_norm[:-1] += 1.0  # (every group's: its weights times e)
    m(x.to(DEV))
    real = torch.as_tensor(np.asarray(m.plan.param_group) >= 0)
    torch.testing.assert_close(m.executor._w.detach().cpu()[real], old[real] * np.e,
                               rtol=1e-5, atol=1e-7)


def test_logits_given_through_data_are_taken_and_stale_references_cannot_write():
    """Logits set with ``.data =`` while owed are the user's (the weights follow them); an
    in-place write through the parameter while its logits are owed raises, not lost."""
    pytest.importorskip("triton")
    c = _dense_circuit()
    x = torch.as_tensor(np.random.default_rng(3).integers(0, 5, (6, 4)))
    m = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    kept = m.sum_logits  # (written now)
    view = kept.detach()  # (its storage from before the step; the parameter's version)
    _train(m, x, 1, read=False)
    with pytest.raises(RuntimeError), torch.no_grad():
        kept.add_(1.0)  # the step dropped the logits: the parameter holds the placeholder
    stepped = m.executor._w.detach().cpu().clone()
    view.add_(0.0)  # pre-step values: the next pass must not take the weights from them
    m(x.to(DEV))
    assert torch.equal(m.executor._w.detach().cpu(), stepped)
    real = torch.as_tensor(np.asarray(m.plan.param_group) >= 0)
    m._parameters["sum_logits"].data = torch.zeros(len(m.plan.params), device=DEV)
    m.params_changed()
    m(x.to(DEV))
    w = m.executor._w.detach().cpu()
    lw = m.log_weights().detach().cpu()  # uniform per group, times its normalizer
    torch.testing.assert_close(w[real], torch.exp(lw[real]), rtol=1e-5, atol=1e-7)
    g = np.asarray(m.plan.param_group)
    sizes = np.bincount(g[g >= 0])
    norm = m.sum_norm.detach().cpu().double().numpy()
    want = np.exp(norm[g[g >= 0]]) / sizes[g[g >= 0]]
    np.testing.assert_allclose(w[real].double().numpy(), want, rtol=1e-5)
