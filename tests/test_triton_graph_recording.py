"""Recording a pass as a CUDA graph must not change what training computes.

CUDA graphs exist only on a GPU, so these tests put a stand-in for ``torch.cuda``'s graph API
under the Triton module on the CPU (kernels under ``TRITON_INTERPRET=1``): a capture records
the pass without running it (every tensor the module and its executor hold is restored when
the capture ends) and a replay runs the recorded pass again. EM training with graphs must then
give the parameters of eager training. The first EM-only backward after an EM step stores the
flows the step left void; its recording once zeroed those flows after they were written,
so that the next EM step moved every sum weight towards uniform.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pccc  # noqa: E402
from pccc.optim import MiniBatchEM  # noqa: E402
from pccc.structures import HCLT, PD  # noqa: E402

pytest.importorskip("triton")
pytestmark = [pytest.mark.interpret, pytest.mark.usefixtures("triton_cache")]
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("a stand-in for CUDA graphs on the CPU", allow_module_level=True)


def _tensors(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor an object holds in its attributes, lists, tuples, dicts and dataclasses
    (a few levels down)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 3 or isinstance(obj, (str, bytes, int, float, type)) or obj is None:
        return []
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("pccc"):
        items = list(vars(obj).values())
    else:
        return []
    return [t for it in items for t in _tensors(it, depth + 1)]


class _StandInGraphs:
    """``torch.cuda``'s streams, events and graphs for a module on the CPU."""

    def __init__(self, module: Any):
        self.module = module
        self.captures = 0

    def install(self, mp: pytest.MonkeyPatch) -> None:
        class Stream:
            def __init__(self, *a: Any, **k: Any): ...
            def wait_stream(self, other: Any) -> None: ...
            def wait_event(self, ev: Any) -> None: ...

        class Event:
            def record(self, *a: Any) -> None: ...
            def synchronize(self) -> None: ...

        class Graph:
            fn: Any = None

            def replay(self) -> None:
                self.fn()

        outer = self

        @contextlib.contextmanager
        def graph(g: Graph, **kw: Any):
            # the pass being recorded is the caller's `fn` (PassRunner._run's local)
            g.fn = sys._getframe(2).f_locals["fn"]
            held = [t for t in _tensors(outer.module) + _tensors(outer.module.executor)
                    if 0 not in t.stride() or t.numel() <= 1]  # (placeholders: not written)
            saved = [t.detach().clone() for t in held]
            yield
            for t, s in zip(held, saved):  # recorded, not run
                t.detach().copy_(s)
            outer.captures += 1

        for name, value in (("Stream", Stream), ("Event", Event), ("CUDAGraph", Graph),
                            ("graph", graph), ("current_stream", lambda *a: Stream()),
                            ("stream", lambda s: contextlib.nullcontext()),
                            ("synchronize", lambda *a: None)):
            mp.setattr(torch.cuda, name, value)


def _train(c: Any, x: torch.Tensor, graphs: bool, mp: pytest.MonkeyPatch | None
           ) -> tuple[dict[str, np.ndarray], int]:
    m = pccc.compile(c, backend="triton", device="cpu", precision="fp32")
    m.param_grads = False  # EM-only training: the EM-direct backward that stores flows
    fake = None
    if graphs:
        assert mp is not None
        fake = _StandInGraphs(m)
        fake.install(mp)
        m.executor.use_graphs = True
    opt = MiniBatchEM(m, step_size=0.1, pseudocount=0.1)
    for i in range(2):  # the second backward is the first that stores into void flows
        ll = m(x[i * 32:(i + 1) * 32])
        ll.mean().backward()
        opt.step()
        m.zero_grad(set_to_none=True)
    m.settle()
    out = {k: v.detach().double().numpy().copy() for k, v in m.state_dict().items()}
    return out, 0 if fake is None else fake.captures


@pytest.mark.parametrize("structure", ["hclt", pytest.param("pd", marks=pytest.mark.heavy)])
def test_em_training_with_graphs_equals_eager(structure, monkeypatch):
    rng = np.random.default_rng(3)
    if structure == "hclt":
        x = torch.as_tensor(rng.integers(0, 3, (64, 6)))
        c = HCLT(x.numpy(), 4, num_cats=3, seed=1)
    else:
        x = torch.as_tensor(rng.integers(0, 4, (64, 16)))
        c = PD((4, 4), 4, split_intervals=(2, 2), num_cats=4, seed=1)
    eager, _ = _train(c, x, False, None)
    recorded, captures = _train(c, x, True, monkeypatch)
    assert captures >= 4  # forward, EM backward (adding, then storing), EM step
    assert eager.keys() == recorded.keys()
    for k in eager:
        np.testing.assert_allclose(recorded[k], eager[k], rtol=1e-5, atol=1e-6, err_msg=k)
