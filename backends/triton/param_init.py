"""The Triton executor's first parameters: the module's sum and input parameters computed on
the device in float32 from the plan's values as :func:`~pccc.backends.triton.upload.start_upload`
uploads them (see :class:`~pccc.backends.triton.compiled.TritonExecutor`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

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
#: 64-weight tiles per slice of the per-tile work on the sum weights
TILE_CHUNK = 1 << 17


def _sum_weights(plan: KernelPlan, dp: DevicePlan, store: Tensor) -> tuple[Tensor, Tensor]:
    """``(w, z)``: the plan's sum weights on the device in float32 (padding 0) and the
    groups' totals (:func:`group_totals`), from the uploaded weights ``store`` (see
    :func:`start_upload`, changed in place)."""
    return store[: len(plan.params)], group_totals(dp, store.view(-1, 64))


def _mixed_groups(dp: DevicePlan, tiles: Tensor) -> tuple[Tensor, Tensor]:
    """The mixed tiles among ``tiles`` (entries of ``dp.tiles``, as int64) and their
    weights' groups: ``[mixed tiles, 64]``, -1 for padding (only those rows of the device
    plan's mixed table are read and widened)."""
    mix = torch.nonzero(tiles <= -2).squeeze(1)
    return mix, dp.mixed[-2 - tiles[mix]].long()


def group_totals(dp: DevicePlan, wt: Tensor) -> Tensor:
    """The groups' totals (``[groups + 1]``, the last one for padding) of the weights ``wt``
    (``[tiles, 64]``, every 64-weight tile of the flat buffer; its padding is zeroed here).
    Their groups come from the device plan's tiles (a tile of one group, or a row of
    per-weight groups): the plan's per-weight group array (155M int64 on PD-256) is never
    copied, and the work goes ``TILE_CHUNK`` tiles at a time (no temporary of the weights'
    size). Torch operations only (no kernel to compile)."""
    ng = dp.num_groups
    z = torch.zeros(ng + 1, dtype=torch.float32, device=wt.device)
    for a in range(0, wt.shape[0], TILE_CHUNK):
        tiles = dp.tiles[a: a + TILE_CHUNK].long()
        part = wt[a: a + TILE_CHUNK]
        part[tiles == -1] = 0.0
        mix, gm = _mixed_groups(dp, tiles)
        wm = torch.where(gm >= 0, part[mix], 0.0)
        part[mix] = wm
        uni = torch.nonzero(tiles >= 0).squeeze(1)
        z.index_add_(0, tiles[uni], part[uni].sum(dim=1))
        z.index_add_(0, torch.where(gm >= 0, gm, ng).reshape(-1), wm.reshape(-1))
    z[ng] = 0.0
    return z


def logits_of(dp: DevicePlan, w: Tensor, z: Tensor) -> Tensor:
    """The sum logits of linear weights ``w`` whose groups total ``z`` (``[groups + 1]``):
    ``log w`` where the weight's group has a positive total, 0 elsewhere and in padding (an
    all-zero group keeps logits 0 beside its ``-inf`` normalizer: weights 0, never NaN).
    ``TILE_CHUNK`` tiles at a time."""
    n = w.numel()
    out = torch.empty(n, dtype=torch.float32, device=w.device)
    whole = n // 64
    wt, ot = w[: whole * 64].view(-1, 64), out[: whole * 64].view(-1, 64)
    pos = z > 0
    for a in range(0, dp.tiles.numel(), TILE_CHUNK):
        tiles = dp.tiles[a: a + TILE_CHUNK].long()
        live = pos[tiles.clamp_min(0)] & (tiles >= 0)
        live = live[:, None].expand(-1, 64).clone()
        mix, gm = _mixed_groups(dp, tiles)
        live[mix] = (gm >= 0) & pos[gm.clamp_min(0)]
        k = min(len(tiles), whole - a)  # whole tiles of w in this chunk
        if k > 0:
            part = wt[a: a + k]
            ot[a: a + k] = torch.where(live[:k], torch.log(torch.where(live[:k], part, 1.0)),
                                       0.0)
        if a + len(tiles) > whole and n > whole * 64:  # the last, partial tile
            tail, lv = w[whole * 64:], live[whole - a, : n - whole * 64]
            out[whole * 64:] = torch.where(lv, torch.log(torch.where(lv, tail, 1.0)), 0.0)
    return out


def unwritten(n: int, dev: torch.device) -> Tensor:
    """The placeholder of owed logits: ``n`` entries over one float of memory (the logits'
    shape, which autograd may have recorded, stays valid; an in-place write into it raises),
    never read as values."""
    return torch.zeros(1, dtype=torch.float32, device=dev).expand(n)


class ParamInit:
    """The executor's :meth:`_init_sums` and :meth:`input_values`, and the sum logits it
    writes when they are first read (:meth:`materialize`, :meth:`drop_logits`)."""

    device: torch.device
    dp: DevicePlan
    _w: Tensor
    _unwritten: Tensor | None
    _inputs_f64: Tensor | None
    _synced: tuple[int, ...] | None
    em: Any
    _param_key: Any

    def _init_sums(self, m: CompiledCircuit, plan: KernelPlan, store: Tensor) -> None:
        """The module's sum parameters from the uploaded weights ``store``, on the device in
        float32 (the numpy float64 path costs seconds on a PD-256's 155M weights); the
        kernels' linear weights ``_w`` start as the plan gives them (no refresh, and no JIT
        of the refresh kernels, before the parameters first change)."""
        dev = self.device
        w, z = _sum_weights(plan, self.dp, store)
        # the logits are written when first read (see TritonExecutor.materialize)
        self._unwritten = unwritten(len(plan.params), dev)
        m.sum_logits = nn.Parameter(self._unwritten)
        self._w = w
        m.register_buffer("sum_norm", torch.where(z > 0, torch.log(torch.where(
            z > 0, z, 1.0)), -math.inf))
        m.register_buffer("group_size", torch.from_numpy(
            np.append(plan.group_size, 1).astype(np.float32)).to(dev), persistent=False)
        m.register_buffer("sum_flows", torch.zeros_like(w), persistent=False)

    def owes_logits(self, m: CompiledCircuit) -> bool:
        """Whether the module's logits are unwritten (see :meth:`materialize`): it holds the
        executor's placeholder (logits given through ``.data`` are the user's own)."""
        p = m._parameters["sum_logits"]
        return self._unwritten is not None and p is not None and \
            p.data_ptr() == self._unwritten.data_ptr()

    @torch.no_grad()
    def materialize(self, m: CompiledCircuit) -> None:
        """Write the sum logits from the kernels' weights ``_w`` if they are owed: the
        module starts without them, and an EM step of EM-only training (``param_grads``
        False) updates ``_w`` alone and drops them (4 bytes a weight of device memory, and
        the step's logit writes); the first read (``model.sum_logits``, ``state_dict()``,
        ``parameters()``, a forward that records gradients) writes them here, by
        :func:`logits_of`."""
        if not self.owes_logits(m):
            return
        self.em.wait()
        p = m._parameters["sum_logits"]
        assert p is not None
        synced = self._synced == self._param_key(m)
        dp, w = self.dp, self._w
        # (w is the first weights of its upload buffer, whole 64-weight tiles)
        z = group_totals(dp, w.as_strided((dp.tiles.numel(), 64), (64, 1)))
        p.data = logits_of(dp, w, z)
        self._unwritten = None
        if synced:  # (the weights stay the kernels' own: no refresh from the new logits)
            self._synced = self._param_key(m)

    def drop_logits(self, m: CompiledCircuit) -> None:
        """Before an EM step that updates ``_w`` alone: the logits are owed from now on
        (see :meth:`materialize`), and their memory is given back."""
        p = m._parameters["sum_logits"]
        assert p is not None
        if not self.owes_logits(m):
            self._unwritten = unwritten(p.numel(), p.device)
            p.data = self._unwritten

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
