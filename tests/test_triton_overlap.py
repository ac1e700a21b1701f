"""EM steps on the module's own stream (``backends/triton/overlap.py``): every way of reading
the tensors an EM step writes waits for it (on the CPU, with a recording stand-in for the CUDA
streams), and on a GPU, training with the overlap gives bit for bit what training without it
gives, read back right after the last step."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from pccc.backends.triton.overlap import EM_WRITES, EMOverlap


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
        self.sum_logits = nn.Parameter(torch.zeros(3))
        self.input_raw = nn.Parameter(torch.zeros(2))
        self.register_buffer("sum_norm", torch.zeros(1))
        self.register_buffer("input_shift", torch.zeros(1))
        self.register_buffer("sum_flows", torch.zeros(3))
        self.register_buffer("other", torch.zeros(1))


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


def test_off_the_gpu_the_step_runs_inline():
    m = _Toy()
    ran = []
    m.launch_em(torch.device("cpu"), lambda: ran.append(1))
    assert ran == [1] and not m.overlap_em and not m._em_pending


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
