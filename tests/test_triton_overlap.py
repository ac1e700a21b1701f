"""EM steps on the module's own stream (``backends/triton/overlap.py``): every way of reading
the tensors an EM step writes waits for it (on the CPU, with a recording stand-in for the CUDA
streams), and on a GPU, training with the overlap gives what training without it gives, read
back right after the last step. The logits an EM step leaves to their first read are written
then, as the torch backend's step writes them, unless written since."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import pccc  # noqa: E402
from pccc.backends.triton.overlap import EM_WRITES, EMOverlap  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
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
    assert current.waits == [ev] and not m._em_pending
    ACCESSES[name](m)  # nothing in flight: no second wait
    assert current.waits == [ev]


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
    want = int(name == "attr sum_logits" or not name.startswith(("attr", "wait_em")))
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
def test_em_logits_are_written_on_their_first_read_unless_written_since():
    pytest.importorskip("triton")
    c = _dense_circuit()
    x = torch.randint(0, 5, (16, 4))
    tri = pccc.compile(c, backend="triton", device=DEV, precision="fp32")
    ref = pccc.compile(c, backend="torch", device="cpu", dtype=torch.float64)
    for m in (tri, ref):
        m(x.to(m.sum_flows.device)).mean().backward()
        MiniBatchEM(m, step_size=0.5, pseudocount=0.1).step()
    real = torch.as_tensor(tri.plan.param_group >= 0)
    left = tri._parameters["sum_logits"].detach().cpu().clone()  # as before the step
    got = tri.sum_logits.detach().cpu()  # written by this read
    assert tri._parameters["sum_logits"] is tri.sum_logits
    assert (left[real] - got[real]).abs().max() > 1e-3  # the step moved them
    np.testing.assert_allclose(torch.exp(got[real]).double().numpy(),
                               torch.exp(ref.log_weights()).detach()[real].numpy(), rtol=1e-5)
    # training writes them nowhere
    calls = []
    settle = tri._settle_em
    tri._settle_em = lambda: (calls.append(1), settle())
    for _ in range(2):
        ll = tri(x.to(DEV))
        ll.mean().backward()
        MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
        tri.zero_grad()
        float(ll.detach().mean())
    assert calls == [] and tri.device.type == DEV and tri.dtype == torch.float32
    assert tri.sum_logits is not None and calls == [1]
    # a write through a reference kept from before a step wins over the deferred one
    kept = tri.sum_logits
    tri(x.to(DEV)).mean().backward()
    MiniBatchEM(tri, step_size=0.5, pseudocount=0.1).step()
    with torch.no_grad():
        kept.fill_(0.0)
    assert bool((tri.sum_logits.detach()[real.to(DEV)] == 0).all())
    lw = tri.log_weights().detach().cpu()[real]  # the weights follow: uniform in each group
    grp = torch.as_tensor(tri.plan.param_group)[real]
    for g in grp.unique():
        v = lw[grp == g]
        assert torch.allclose(v, v[:1].expand_as(v), atol=1e-6)


gpu = pytest.mark.skipif(not torch.cuda.is_available() or
                         os.environ.get("TRITON_INTERPRET") == "1", reason="needs a CUDA GPU")


@gpu
@pytest.mark.usefixtures("triton_cache")
def test_training_with_the_overlap_equals_training_without():
    import pccc
    from pccc.optim import MiniBatchEM
    from pccc.structures import HCLT

    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.integers(0, 4, (2048, 48)))
    c = HCLT(x[:512].numpy(), 16, seed=1)
    runs = []
    for overlap in (False, True):
        m = pccc.compile(c, backend="triton", device="cuda", precision="fp32")
        m.overlap_em = overlap
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
