"""The L3 verifier: every index of a :class:`~pccc.ir.plan.KernelPlan` in range, every layer
reading only what earlier layers wrote.

Example::

    from pccc.ir.plan_verify import verify_plan
    verify_plan(plan)      # raises VerifyError naming the layer and partition
"""

from __future__ import annotations

import numpy as np

from pccc.ir.errors import VerifyError
from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer


def _range(arr: np.ndarray, lo: int, hi: int, what: str) -> None:
    if arr.size and (int(arr.min()) < lo or int(arr.max()) >= hi):
        raise VerifyError(f"{what}: values {int(arr.min())}..{int(arr.max())} outside "
                          f"{lo}..{hi - 1}")


def _check_roots(plan: KernelPlan, written: np.ndarray) -> None:
    if plan.num_roots < 1:
        raise VerifyError(f"num_roots is {plan.num_roots}; a plan has at least one root")
    for s in range(plan.root_slot, plan.root_slot + min(plan.num_roots, plan.num_node_slots + 1)):
        if not 0 <= s < plan.num_node_slots or not written[s]:
            raise VerifyError(f"root slot {s} is never written")


def _check_inputs(plan: KernelPlan, written: np.ndarray) -> None:
    for i, ly in enumerate(plan.input_layers):
        where = f"input layer {i} ({ly.dist})"
        _range(np.arange(ly.node_start, ly.node_start + ly.n), 1, plan.num_node_slots,
               f"{where} slots")
        _range(ly.vars, 0, max(plan.num_vars, 1), f"{where} vars")
        if ly.param_size:
            _range(ly.param_start, 0, len(plan.input_params) - ly.param_size + 1,
                   f"{where} param_start")
        if ly.dist == "indicator" and (ly.values is None or ly.values.shape != ly.vars.shape):
            raise VerifyError(f"{where}: indicator values missing or of the wrong shape")
        if written[ly.node_start: ly.node_start + ly.n].any():
            raise VerifyError(f"{where}: slots written twice")
        written[ly.node_start: ly.node_start + ly.n] = True


def _check_sum(plan: KernelPlan, li: int, ly: SumLayer, prev: ProductLayer,
               written: np.ndarray) -> None:
    for pi, sp in enumerate(ly.partitions):
        where = f"layer {li} sum partition {pi}"
        nb, nc = sp.num_blocks, sp.max_chunks
        B, C = sp.block_size, sp.chunk_size
        if sp.chunk_start.shape != (nb, nc) or sp.param_start.shape != (nb, nc):
            raise VerifyError(f"{where}: table shapes {sp.chunk_start.shape}, "
                              f"{sp.param_start.shape} != {(nb, nc)}")
        if B * C > plan.reserved_params or C > prev.reserved:
            raise VerifyError(f"{where}: padding tile or chunk larger than the reserved one")
        _range(sp.num_chunks, 1, nc + 1, f"{where} num_chunks")
        _range(sp.chunk_start, 0, prev.num_elem_slots - C + 1, f"{where} chunk_start")
        _range(sp.param_start, 0, len(plan.params) - B * C + 1, f"{where} param_start")
        slots = (sp.node_start[:, None] + np.arange(B)[None, :]).ravel()
        _range(slots, 1, plan.num_node_slots, f"{where} node slots")
        if written[slots].any():
            raise VerifyError(f"{where}: node slots written twice")
        written[slots] = True


def verify_plan(plan: KernelPlan) -> None:
    """Check index ranges, reserved regions and the product/sum alternation of a plan.

    Raises:
        VerifyError: naming the layer and partition at fault.
    """
    if len(plan.param_group) != len(plan.params):
        raise VerifyError("param_group and params differ in length")
    if plan.reserved_params < 1 or np.any(plan.params[: plan.reserved_params] != 0):
        raise VerifyError("the reserved padding tile must hold zeros")
    written = np.zeros(plan.num_node_slots, bool)
    written[0] = True
    _check_inputs(plan, written)
    prev: ProductLayer | None = None
    for li, ly in enumerate(plan.layers):
        if isinstance(ly, ProductLayer):
            if prev is not None:
                raise VerifyError(f"layer {li}: two product layers in a row")
            for pi, pp in enumerate(ly.partitions):
                where = f"layer {li} product partition {pi}"
                _range(np.arange(pp.elem_start, pp.elem_start + pp.num_elems), ly.reserved,
                       ly.num_elem_slots, f"{where} elements")
                kids = pp.children
                _range(kids, 0, plan.num_node_slots, f"{where} children")
                if kids.size and not written[kids].all():
                    raise VerifyError(f"{where}: reads node slots no earlier layer writes")
            prev = ly
        elif isinstance(ly, SumLayer):
            if prev is None:
                raise VerifyError(f"layer {li}: a sum layer without a product layer before it")
            _check_sum(plan, li, ly, prev, written)
            prev = None
        else:
            raise VerifyError(f"layer {li}: not a product or sum layer")
    _check_roots(plan, written)
    for key, idx in plan.param_map.items():
        buf = plan.input_params if key in plan.input_param_keys else plan.params
        _range(idx, 0, len(buf), f"param_map[{key!r}]")
