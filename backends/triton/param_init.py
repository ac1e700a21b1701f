"""The Triton executor's first parameters: the module's sum and input parameters computed on
the device in float32 from the plan's values as :func:`~pccc.backends.triton.upload.start_upload`
uploads them (see :class:`~pccc.backends.triton.compiled.TritonExecutor`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.torch import inputs as fam
from pccc.backends.triton.runtime import DevicePlan
from pccc.ir.plan import KernelPlan

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit

#: values per slice when the uploaded input parameters are converted (bounds the float64
#: temporaries on the device)
INIT_CHUNK = 1 << 23


def _sum_weights(plan: KernelPlan, dp: DevicePlan, store: Tensor, dev: torch.device
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """``(w, live, z)``: the plan's sum weights on the device in float32 (padding 0), which
    of them belong to a group of positive total, and the groups' totals (``[groups + 1]``,
    the last one for padding), from the uploaded weights ``store`` (see :func:`start_upload`,
    changed in place). Their groups come from the device plan's 64-weight tiles (a tile of
    one group, or a row of per-weight groups): the plan's per-weight group array (155M int64
    on PD-256) is never copied."""
    n, ng = len(plan.params), len(plan.group_size)
    tiles = dp.tiles.long()
    wt = store.view(-1, 64)
    mix = torch.nonzero(tiles <= -2).squeeze(1)
    gm = dp.mixed.long()[-2 - tiles[mix]]  # [mixed tiles, 64] group per weight, -1 padding
    wt[tiles == -1] = 0.0
    wm = torch.where(gm >= 0, wt[mix], 0.0)
    wt[mix] = wm
    uni = torch.nonzero(tiles >= 0).squeeze(1)
    z = torch.zeros(ng + 1, dtype=torch.float32, device=dev)
    z.index_add_(0, tiles[uni], wt[uni].sum(dim=1))
    z.index_add_(0, torch.where(gm >= 0, gm, ng).reshape(-1), wm.reshape(-1))
    z[ng] = 0.0
    live = torch.zeros(wt.shape, dtype=torch.bool, device=dev)
    live[uni] = (z[tiles[uni]] > 0)[:, None]
    live[mix] = (gm >= 0) & (z[gm.clamp_min(0)] > 0)
    return store[:n], live.view(-1)[:n], z



class ParamInit:
    """The executor's :meth:`_init_sums` and :meth:`input_values`."""

    device: torch.device
    dp: DevicePlan
    _w: Tensor
    _inputs_f64: Tensor | None

    def _init_sums(self, m: CompiledCircuit, plan: KernelPlan, store: Tensor) -> None:
        """The module's sum parameters from the uploaded weights ``store``, on the device in
        float32 (the numpy float64 path costs seconds on a PD-256's 155M weights); the
        kernels' linear weights ``_w`` start as the plan gives them (no refresh, and no JIT
        of the refresh kernels, before the parameters first change)."""
        dev = self.device
        w, live, z = _sum_weights(plan, self.dp, store, dev)
        # an all-zero group keeps raw 0 and a -inf normalizer (weights 0, never NaN)
        m.sum_logits = nn.Parameter(torch.where(live, torch.log(torch.where(live, w, 1.0)), 0.0))
        self._w = w
        del live
        m.register_buffer("sum_norm", torch.where(z > 0, torch.log(torch.where(
            z > 0, z, 1.0)), -math.inf))
        m.register_buffer("group_size", torch.from_numpy(
            np.append(plan.group_size, 1).astype(np.float32)).to(dev), persistent=False)
        m.register_buffer("sum_flows", torch.zeros_like(w), persistent=False)

    def input_values(self, m: CompiledCircuit, plan: KernelPlan) -> tuple[Tensor, Tensor]:
        """The module's ``input_raw`` and ``input_shift``, computed on the device from the
        uploaded native values (float64, see :func:`start_upload`; on the host, HCLT-256's
        51M categorical parameters cost 0.2 s of logarithms alone), in slices of at most
        ``INIT_CHUNK`` values; float32 results, as the module keeps them."""
        dev = self.device
        native = self._inputs_f64
        assert native is not None
        q = len(plan.input_params)
        raw = torch.zeros(max(q, 1), dtype=torch.float32, device=dev)
        shift = torch.zeros(max(sum(ly.n for ly in plan.input_layers), 1),
                            dtype=torch.float32, device=dev)
        for i, ly in enumerate(plan.input_layers):
            if not ly.param_size:
                continue
            size, span, n0 = m._in_size[i], m._in_span[i], int(m._in_node0[i])
            if span is None:  # tied rows: one gather (small in every workload seen)
                pidx = np.asarray(ly.param_start, np.int64)[:, None] + np.arange(size)
                pt = torch.from_numpy(pidx).to(dev)
                r, s = fam.to_raw_tensor(ly.dist, native[pt])
                raw[pt] = r.float()
                shift[n0: n0 + ly.n] = s[:, 0]
                continue
            step = max(1, INIT_CHUNK // size)
            for k in range(0, ly.n, step):  # whole rows per slice (a row's sum is its shift)
                rows = min(step, ly.n - k)
                a = span[0] + k * size
                r, s = fam.to_raw_tensor(ly.dist, native[a: a + rows * size].view(rows, size))
                raw[a: a + rows * size] = r.reshape(-1)
                shift[n0 + k: n0 + k + rows] = s[:, 0]
        return raw, shift
