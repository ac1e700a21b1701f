"""EM steps on a stream of their own (``backends/triton/overlap.py``) and the module's settled
accessors (``backends/module.py``): every public way of reading what an EM step writes
settles the executor first (a recording executor stands in), the stream waits once per
reader stream (a recording stand-in for the CUDA streams), and on a GPU, training with the
overlap gives what training without it gives, read back right after the last step. The EM
flows a step leaves for the next backward to store give what the torch backend's float64
flows give."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.module import CompiledCircuit  # noqa: E402
from pccc.backends.torch.executor import TorchExecutor  # noqa: E402
from pccc.backends.triton.overlap import EMStream  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from tests.strategies import circuits, data_for  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


class _Current:
    def __init__(self) -> None:
        self.waits: list[object] = []

    def wait_event(self, ev: object) -> None:
        self.waits.append(ev)


class _Recording(TorchExecutor):
    """The torch executor, recording each ``settle`` (``deferred`` or not)."""

    def __init__(self) -> None:
        self.settles: list[bool] = []

    def settle(self, m, deferred=False):
        self.settles.append(deferred)


WRITTEN = ("sum_logits", "input_raw", "sum_norm", "input_shift", "sum_flows")
#: public reads of the module -> whether they settle what a step deferred too
SETTLING = {
    **{f"attr {n}": (lambda m, n=n: getattr(m, n), n == "sum_flows") for n in WRITTEN},
    "parameters()": (lambda m: list(m.parameters()), True),
    "named_parameters()": (lambda m: list(m.named_parameters()), True),
    "buffers()": (lambda m: list(m.buffers()), True),
    "state_dict()": (lambda m: m.state_dict(), True),
    "load_state_dict()": (lambda m: m.load_state_dict(
        {k: v.clone() for k, v in m.state_dict().items()}), True),
    "settle()": (lambda m: m.settle(), True),
}
QUIET = {
    "device": lambda m: m.device, "dtype": lambda m: m.dtype,
    "zero_grad()": lambda m: m.zero_grad(), "attr plan": lambda m: m.plan,
    "attr training": lambda m: m.training,
}


@pytest.fixture(scope="module")
def plan():
    return compile_plan(_dense_circuit(n=4))


@pytest.mark.parametrize("name", sorted(SETTLING))
def test_every_public_read_of_what_em_writes_settles(plan, name):
    ex = _Recording()
    m = CompiledCircuit(plan, executor=ex)
    ex.settles.clear()
    read, deferred = SETTLING[name]
    read(m)
    # (a whole-module read settles everything first; an attribute, its own tensor)
    assert (True in ex.settles) if deferred else ex.settles == [False], ex.settles


@pytest.mark.parametrize("name", sorted(QUIET))
def test_other_reads_do_not_settle(plan, name):
    ex = _Recording()
    m = CompiledCircuit(plan, executor=ex)
    m(torch.randint(0, 5, (3, 4))).sum().backward()
    ex.settles.clear()
    QUIET[name](m)
    assert ex.settles == []
    assert (m.sum_logits.grad is None) == (name == "zero_grad()")


def test_accessors_before_the_tensors_exist_are_missing_attributes():
    m = CompiledCircuit.__new__(CompiledCircuit)
    torch.nn.Module.__init__(m)
    assert not hasattr(m, "sum_logits") and not hasattr(m, "sum_flows")


@pytest.fixture
def current(monkeypatch):
    cur = _Current()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: cur)
    return cur


def test_each_stream_waits_for_the_step_once(monkeypatch):
    a, b = _Current(), _Current()
    now = [a]
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: now[0])
    em = EMStream(torch.device("cpu"), True)
    em.wait()  # nothing in flight
    assert a.waits == []
    ev = object()
    em.done, em.pending = ev, True
    em.wait()
    em.wait()
    assert a.waits == [ev]
    now[0] = b  # a read on another stream is not ordered by the first one's wait
    em.wait()
    assert b.waits == [ev] and a.waits == [ev]


def test_off_the_gpu_the_step_runs_inline(current):
    em = EMStream(torch.device("cpu"), True)
    ran: list[int] = []
    em.launch(lambda: ran.append(1))
    assert ran == [1] and not em.enabled and not em.pending and current.waits == []


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
    # EM-only training zeroes no void flows (the stored flows stay owed to the next backward)
    ex = tri.executor
    zeroed = []
    clear = ex._clear_owed
    ex._clear_owed = lambda m: (zeroed.append(ex._flows_owed), clear(m))
    tri.param_grads = False
    for _ in range(2):
        ll = tri(x.to(DEV))
        ll.mean().backward()
        MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
        tri.zero_grad()
        float(ll.detach().mean())
    assert not any(zeroed) and tri.device.type == DEV and tri.dtype == torch.float32
    assert not tri.sum_flows.any() and zeroed[-1]


def _em_script(m, x):
    """A sequence of EM-training operations; the sum weights after each step, and the flows
    read at two points."""
    em = MiniBatchEM(m, step_size=0.4, pseudocount=0.1)
    xd = torch.as_tensor(x).to(m.device)
    out = []

    def fb(rows=slice(None), weighted=False):
        ll = m(xd[rows])
        if weighted:
            (-(ll * torch.linspace(0.5, 1.5, len(ll), device=ll.device)).sum()).backward()
        else:
            ll.mean().backward()
        m.zero_grad()

    def step():
        em.step()
        out.append(torch.as_tensor(m.current_weights()))

    m.param_grads = False
    fb(), step()  # stored after the step
    fb(slice(0, 5)), fb(slice(5, None)), step()  # the second pass adds to the stored
    step()  # no pass since the last step: zero flows
    fb()
    out.append(m.sum_flows.detach().cpu().double().clone())  # read between a pass and a step
    step()
    m.param_grads = True  # the pass with gradients adds its flows
    fb(weighted=True), step()
    m.param_grads = False
    em.zero_flows()
    fb(), step()
    fb()
    step()
    out.append(m.sum_flows.detach().cpu().double().clone())  # read right after a step: zero
    return out


def _matches_torch(c, x, **options):
    """The script on the Triton module (stored flows) and on the torch backend's float64
    module: equal results."""
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32", **options)
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64)
    real = torch.as_tensor(tri.plan.param_group >= 0)
    got, want = _em_script(tri, x), _em_script(ref, x)
    for a, b in zip(got, want):
        a, b = a[real], b[real]
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))
        fin = torch.isfinite(b)
        torch.testing.assert_close(a[fin], b[fin], rtol=2e-4, atol=1e-6)
    assert not got[-1].any()


@pytest.mark.interpret
@pytest.mark.heavy
@pytest.mark.usefixtures("triton_cache")
@settings(max_examples=3, deadline=None)
@given(st.data())
def test_flows_stored_after_a_step_equal_the_torch_flows(data):
    """Random circuits (tied weights among them: those parts cannot store)."""
    pytest.importorskip("triton")
    c = data.draw(circuits(max_vars=4, max_n=3))
    x = data.draw(data_for(c, n_rows=11, missing_prob=0.2))
    _matches_torch(c, x, programs=1)  # every part that can store does (1 program a launch)


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
@pytest.mark.parametrize("programs", [1, 0])
def test_an_untied_circuit_trains_as_the_torch_backend(programs):
    pytest.importorskip("triton")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 5, size=(13, 4))
    x[rng.random(x.shape) < 0.2] = -1
    _matches_torch(_dense_circuit(), x, programs=programs)


@pytest.mark.interpret
@pytest.mark.usefixtures("triton_cache")
def test_parts_with_tied_weights_train_as_the_torch_backend():
    """Two sum vectors of one layer share their weights: each weight's flow comes from two
    blocks, so neither part may store (each would overwrite the other's)."""
    pytest.importorskip("triton")
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(2))
    leaves = [b.input(v, "categorical", n=4, card=5) for v in range(4)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=4, tie="tied")
    right = b.sum([b.product([leaves[2], leaves[3]])], n=4, tie="tied")
    c = b.build(b.sum([b.product([left, right])], n=1), num_vars=4)
    rng = np.random.default_rng(4)
    _matches_torch(c, rng.integers(0, 5, size=(13, 4)), programs=1)


gpu = pytest.mark.skipif(not torch.cuda.is_available() or
                         os.environ.get("TRITON_INTERPRET") == "1", reason="needs a CUDA GPU")


@gpu
@pytest.mark.usefixtures("triton_cache")
def test_training_with_the_overlap_equals_training_without():
    from pccc.structures import HCLT

    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.integers(0, 4, (2048, 48)))
    c = HCLT(x[:512].numpy(), 16, seed=1)
    runs = []
    for overlap in (False, True):
        m = pccc.compile(c, backend="triton", device="cuda", precision="fp32",
                         overlap_em=overlap)
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
        assert m.executor.overlap_em == overlap
        assert (m.executor.em.stream is not None) == overlap
    # (the flows' atomics add in any order: equal up to rounding; a read that did not wait
    # would see the weights from before the last step, of size 0.3)
    (la, *ta, sa), (lb, *tb, sb) = runs
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    assert sa.keys() == sb.keys()
    for a, b in [*zip(ta, tb), *((sa[k], sb[k]) for k in sa)]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
