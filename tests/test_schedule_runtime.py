"""``DevicePlan`` carries out its schedule and nothing else: its launches, recorded (nothing
runs), are the schedule's, in order, with the schedule's kernels, tiles (after the fill rule,
recomputed here), warps, splits and flags."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from pccc.backends.triton.options import TritonOptions  # noqa: E402
from pccc.backends.triton.runtime import DevicePlan, col_bound  # noqa: E402
from pccc.ir.plan import KernelPlan  # noqa: E402
from pccc.ir.schedule import Launch  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from tests.test_schedule import _sibling_plan  # noqa: E402


class _Recorder:
    """Stands for the kernel module: ``k.name[grid](*args, **kw)`` is recorded."""

    def __init__(self) -> None:
        self.log: list[tuple[str, tuple[int, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        log = self.log

        class _Launcher:
            def __getitem__(self, grid: tuple[int, ...]) -> Any:
                return lambda *args, **kw: log.append((name, tuple(grid), kw))

        return _Launcher()


def _tile(ln: Launch, width: int, programs: int) -> int:
    bt = ln.bt
    while ln.fill and bt > 16 and ln.fill * -(-width // bt) < programs:
        bt //= 2
    return bt


def _passes(plan: KernelPlan, dp: DevicePlan, batch: int) -> None:
    stride = dp.stride_for(batch)
    rows, v = plan.num_node_slots + 1, plan.num_vars
    node, flow = torch.zeros(rows, stride), torch.zeros(rows, stride)
    xt, mt = torch.zeros(v, stride), torch.zeros(v, stride, dtype=torch.int8)
    w = torch.zeros(len(plan.params))
    one, flag = torch.ones(stride), torch.zeros(1, dtype=torch.int32)
    dp.forward(xt, mt, batch, w, [(torch.zeros(1), torch.zeros(1))] * len(plan.input_layers),
               node)
    dp.sum_backward(node, flow, one, flag, batch, w, torch.zeros_like(w), torch.zeros_like(w))
    q = len(plan.input_params)
    ns = [torch.zeros(ly.n, 4) for ly in plan.input_layers]
    dp.input_backward(flow, xt, mt, one, flag, batch, torch.zeros(q), ns, torch.zeros(q), ns)


def _dense_plan() -> KernelPlan:
    """Categorical leaves of 20 values, 32 nodes a variable: one-hot GEMM statistics."""
    from pccc.ir import CircuitBuilder

    b = CircuitBuilder(rng=np.random.default_rng(0))
    leaves = [b.input(v, "categorical", n=32, card=20) for v in range(4)]
    left = b.sum([b.product([leaves[0], leaves[1]])], n=32)
    right = b.sum([b.product([leaves[2], leaves[3]]), b.product([leaves[3], leaves[2]])], n=32)
    return compile_plan(b.build(b.sum([b.product([left, right])], n=1), num_vars=4))


@pytest.mark.parametrize("small,programs", [(0, 8), (0, 528), (1 << 17, 64)])
@pytest.mark.parametrize("make", [_sibling_plan, _dense_plan])
def test_launches_are_the_schedules(make: Any, small: int, programs: int) -> None:
    plan = make()
    rec = _Recorder()
    dp = DevicePlan(plan, rec, torch.device("cpu"),  # type: ignore[arg-type]
                    TritonOptions(small_part=small, programs=programs))
    s = dp.schedule
    assert s.programs == programs and dp.programs == programs
    for batch in (5, 300):
        rec.log.clear()
        _passes(plan, dp, batch)
        width = dp.stride_for(batch)
        # host steps (torch fills) launch nothing; one-hot statistics: weighted, then EM
        launches = [ln for ln in s.forward + s.backward if ln.kernel
                    for _ in range(2 if ln.kind == "input_cat_dot" else 1)]
        want = [(ln.kernel, _tile(ln, width, programs), ln.warps) for ln in launches]
        got = [(name, kw.get("BT", kw.get("CB")), kw.get("num_warps", 0))
               for name, _, kw in rec.log]
        assert got == want
        cols = col_bound(batch)
        for (_, grid, kw), ln in zip(rec.log, launches):
            if ln.kind == "sum_bwd":
                p = s.parts[ln.part]
                assert grid[:2] == (p.nb, p.NC)
                assert grid[2] == min(-(-cols // ln.bt), ln.max_splits)
                assert (kw["SCATTER"], kw["RATIO"], kw["ATOMIC"]) == (ln.scatter, ln.ratio,
                                                                      ln.atomic)
            if ln.kind == "sum_eflow":
                p = s.parts[ln.part]
                assert grid[:2] == (p.groups, p.NC) and kw["G"] == p.G
                assert kw["ATOMIC"] == ln.atomic
    assert any(ln.kind == "input_cat_dot" for ln in s.backward) == (make is _dense_plan)
    if make is _sibling_plan and not small:
        assert any(ln.kind == "sum_eflow" for ln in s.backward)
