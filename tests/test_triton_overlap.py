"""EM steps on the module's own stream (``backends/triton/overlap.py``): every way of reading
the tensors an EM step writes waits for it (on the CPU, with a recording stand-in for the CUDA
streams), and on a GPU, training with the overlap gives what training without it gives, read
back right after the last step. The EM flows a step leaves for the next backward to store
give what flows zeroed and added give, and the logits are written by the step itself."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.triton.overlap import EM_WRITES, EMOverlap  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from tests.strategies import circuits, data_for  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


class _Stream:
    device = torch.device("cpu")


class _Current:
    def __init__(self) -> None:
        self.waits: list[object] = []

    def wait_event(self, ev: object) -> None:
        self.waits.append(ev)


class _Toy(EMOverlap, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._init_overlap(torch.device("cpu"), True)
        self.settled = 0
        self.sum_logits = nn.Parameter(torch.zeros(3))
        self.input_raw = nn.Parameter(torch.zeros(2))
        self.register_buffer("sum_norm", torch.zeros(1))
        self.register_buffer("input_shift", torch.zeros(1))
        self.register_buffer("sum_flows", torch.zeros(3))
        self.register_buffer("other", torch.zeros(1))

    def _settle_em(self) -> None:
        self.settled += 1


ACCESSES = {
    **{f"attr {n}": (lambda m, n=n: getattr(m, n)) for n in sorted(EM_WRITES)},
    "parameters()": lambda m: list(m.parameters()),
    "named_parameters()": lambda m: list(m.named_parameters()),
    "buffers()": lambda m: list(m.buffers()),
    "state_dict()": lambda m: m.state_dict(),
    "load_state_dict()": lambda m: m.load_state_dict(
        {k: v.clone() for k, v in nn.Module.state_dict(m).items()}),
    ".to()": lambda m: m.to(torch.float32),
    "wait_em()": lambda m: m.wait_em(),
    "settle_em()": lambda m: m.settle_em(),
}


@pytest.fixture
def current(monkeypatch):
    cur = _Current()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: cur)
    return cur


@pytest.mark.parametrize("name", sorted(ACCESSES))
def test_every_read_of_what_em_writes_waits_once(current, name):
    m = _Toy()
    ev = object()
    m._em_stream, m._em_done, m._em_pending = _Stream(), ev, True
    ACCESSES[name](m)
    assert current.waits == [ev]
    ACCESSES[name](m)  # this stream already waits: no second wait
    assert current.waits == [ev]


def test_each_stream_waits_for_the_step(monkeypatch):
    a, b = _Current(), _Current()
    now = [a]
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: now[0])
    m = _Toy()
    ev = object()
    m._em_stream, m._em_done, m._em_pending = _Stream(), ev, True
    assert m.sum_norm is not None and a.waits == [ev]
    now[0] = b  # a read on another stream is not ordered by the first one's wait
    assert m.sum_norm is not None and b.waits == [ev]
    now[0] = a
    m.wait_em()
    assert a.waits == [ev] and b.waits == [ev]


def test_other_attributes_and_idle_modules_do_not_wait(current):
    m = _Toy()
    assert m.sum_logits is not None and m.state_dict()  # nothing in flight
    m.sum_logits.grad = torch.ones(3)
    m._em_stream, m._em_done, m._em_pending = _Stream(), object(), True
    assert m.other is not None and m.training  # not written by an EM step
    m.zero_grad()  # gradients only
    assert current.waits == [] and m._em_pending
    assert m.sum_logits.grad is None and current.waits == [m._em_done]


@pytest.mark.parametrize("name", sorted(ACCESSES))
def test_deferred_writes_are_made_on_the_first_read_that_needs_them(current, name):
    m = _Toy()
    m._em_deferred = True
    ACCESSES[name](m)
    # the deferred tensors' attributes and the whole-module reads, not the others
    want = int(name == "attr sum_flows" or
               not name.startswith(("attr", "wait_em")))
    assert m.settled == want and m._em_deferred == (not want) and current.waits == []
    m.zero_grad()
    assert m.settled == want


def test_off_the_gpu_the_step_runs_inline():
    m = _Toy()
    ran = []
    m.launch_em(torch.device("cpu"), lambda: ran.append(1))
    assert ran == [1] and not m.overlap_em and not m._em_pending


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_em_writes_the_logits_and_a_training_loop_settles_nothing():
    pytest.importorskip("triton")
    c = _dense_circuit()
    x = torch.randint(0, 5, (16, 4))
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64)
    kept = tri.sum_logits
    for m in (tri, ref):
        m(x.to(m.sum_flows.device)).mean().backward()
        MiniBatchEM(m, step_size=0.5, pseudocount=0.1).step()
    real = torch.as_tensor(tri.plan.param_group >= 0)
    got = kept.detach().cpu()  # a reference kept from before the step holds its logits
    np.testing.assert_allclose(torch.exp(got[real]).double().numpy(),
                               torch.exp(ref.log_weights()).detach()[real].numpy(), rtol=1e-5)
    # an in-place update through that reference keeps the step's values (no deferred write)
    w = tri.log_weights().detach().cpu()
    with torch.no_grad():
        kept.add_(0.0)
    torch.testing.assert_close(tri.log_weights().detach().cpu(), w, rtol=1e-6, atol=1e-6)
    # EM-only training settles nothing (the stored flows stay owed to the next backward)
    calls = []
    settle = tri._settle_em
    tri._settle_em = lambda: (calls.append(1), settle())
    tri.param_grads = False
    for _ in range(2):
        ll = tri(x.to(DEV))
        ll.mean().backward()
        MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
        tri.zero_grad()
        float(ll.detach().mean())
    assert calls == [] and tri.device.type == DEV and tri.dtype == torch.float32
    assert tri.sum_flows is not None and calls == [1]


def _em_script(m, x, programs):
    """A sequence of EM-training operations; the sum weights after each step, and the flows
    read at two points. ``programs``: what the backward launches aim for (1: every part's
    programs have whole batches, so every weight's flow is stored after a step)."""
    em = MiniBatchEM(m, step_size=0.4, pseudocount=0.1)
    xd = torch.as_tensor(x).to(DEV)
    out = []

    def fb(rows=slice(None), weighted=False):
        ll = m(xd[rows])
        if weighted:
            (-(ll * torch.linspace(0.5, 1.5, len(ll), device=ll.device)).sum()).backward()
        else:
            ll.mean().backward()
        m.zero_grad()

    def step():  # (the kernels' weights: reading the logits would settle what is deferred)
        em.step()
        m.wait_em()
        out.append(m._w.detach().cpu().clone())

    m.param_grads = False
    fb(), step()  # stored after the step
    fb(slice(0, 5)), fb(slice(5, None)), step()  # the second pass adds to the stored
    step()  # no pass since the last step: zero flows
    fb()
    out.append(m.sum_flows.detach().cpu().clone())  # read between a pass and a step
    step()
    m.param_grads = True  # the pass with gradients adds its flows
    fb(weighted=True), step()
    m.param_grads = False
    em.zero_flows()
    fb(), step()
    fb()
    step()
    out.append(m.sum_flows.detach().cpu().clone())  # read right after a step: all zero
    return out


def _store_equals_add(c, x, programs):
    """The script with and without stored flows: equal results; the parts' ``store``."""
    runs = []
    for store in (False, True):
        m = pccc.compile(c, backend="triton", device=DEV, precision="fp32",
                         programs=programs or 0)
        m.store_flows = store
        runs.append(_em_script(m, x, programs))
    for a, b in zip(*runs):
        fin = torch.isfinite(a)
        assert torch.equal(fin, torch.isfinite(b))
        torch.testing.assert_close(a[fin], b[fin], rtol=1e-5, atol=1e-6)
    assert not runs[1][-1].any()
    return [p.em_store for p in m.dp.schedule.parts]


@pytest.mark.interpret
@pytest.mark.heavy
@pytest.mark.usefixtures("triton_cache")
@settings(max_examples=3, deadline=None)
@given(st.data())
def test_flows_stored_after_a_step_equal_flows_added(data):
    """Random circuits (tied weights among them: those parts cannot store)."""
    pytest.importorskip("triton")
    c = data.draw(circuits(max_vars=4, max_n=3))
    x = data.draw(data_for(c, n_rows=11, missing_prob=0.2))
    _store_equals_add(c, x, 1)  # every part that can store does (1 program per launch)


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_every_part_of_an_untied_circuit_stores_when_its_programs_fill_the_card():
    pytest.importorskip("triton")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 5, size=(13, 4))
    x[rng.random(x.shape) < 0.2] = -1
    assert all(_store_equals_add(_dense_circuit(), x, 1))
    assert not any(_store_equals_add(_dense_circuit(), x, None))  # 8 programs: one block


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_parts_with_tied_weights_add_their_flows():
    """Two sum vectors of one layer share their weights: each weight's flow comes from two
    blocks, so neither part stores (with stores, each would overwrite the other's)."""
    pytest.importorskip("triton")
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(2))
    leaves = [b.input(v, "categorical", n=4, card=5) for v in range(4)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=4, tie="tied")
    right = b.sum([b.product([leaves[2], leaves[3]])], n=4, tie="tied")
    c = b.build(b.sum([b.product([left, right])], n=1), num_vars=4)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, size=(13, 4))
    stores = _store_equals_add(c, x, 1)
    assert any(stores) and not all(stores), stores


gpu = pytest.mark.skipif(not torch.cuda.is_available() or
                         os.environ.get("TRITON_INTERPRET") == "1", reason="needs a CUDA GPU")


@gpu
@pytest.mark.usefixtures("triton_cache")
def test_training_with_the_overlap_and_stored_flows_equals_training_without():
    import pccc
    from pccc.optim import MiniBatchEM
    from pccc.structures import HCLT

    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.integers(0, 4, (2048, 48)))
    c = HCLT(x[:512].numpy(), 16, seed=1)
    runs = []
    for overlap in (False, True):
        m = pccc.compile(c, backend="triton", device="cuda", precision="fp32")
        m.overlap_em = m.store_flows = overlap  # against the plain path on both counts
        m.param_grads = False
        em = MiniBatchEM(m, step_size=0.3, pseudocount=0.1)
        xg = x.cuda()
        lls = []
        for s in range(0, len(x), 256):
            ll = m(xg[s:s + 256])
            ll.mean().backward()
            em.step()
            m.zero_grad()
            if s + 256 < len(x):
                lls.append(float(ll.detach().mean()))
        # read straight after the last step (no sync between): these reads must wait
        runs.append((lls, m.sum_logits.detach().clone(), m.input_raw.detach().clone(),
                     m.sum_norm.clone(), {k: v.clone() for k, v in m.state_dict().items()}))
        assert m.overlap_em == overlap and (m._em_stream is not None) == overlap
    # (the flows' atomics add in any order: equal up to rounding; a read that did not wait
    # would see the weights from before the last step, of size 0.3)
    (la, *ta, sa), (lb, *tb, sb) = runs
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    assert sa.keys() == sb.keys()
    for a, b in [*zip(ta, tb), *((sa[k], sb[k]) for k in sa)]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
