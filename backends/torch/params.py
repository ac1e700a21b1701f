"""Parameters of a compiled circuit: parametrization, EM updates, and reading them back.

Shared by every backend built on :class:`~pccc.backends.torch.module.CompiledCircuit`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pccc.backends.torch import inputs as fam
from pccc.ir.plan import KernelPlan


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(a, copy=True))


def _var_groups(vars_: np.ndarray) -> tuple[int, int] | None:
    """``(groups, units)`` when the nodes come in runs of ``units`` over one variable each
    (then the data rows need not be copied per node: see ``Batch.rows``)."""
    n = len(vars_)
    runs = np.flatnonzero(np.diff(vars_)) + 1
    units = int(runs[0]) if len(runs) else n
    if units < 2 or n % units or not np.all(vars_.reshape(-1, units) == vars_[::units, None]):
        return None
    return n // units, units


class ParamsMixin:
    """Parameter handling of :class:`CompiledCircuit` (see its module docstring)."""

    plan: KernelPlan
    sum_logits: nn.Parameter
    input_raw: nn.Parameter
    sum_group: Tensor
    sum_norm: Tensor
    group_size: Tensor
    sum_flows: Tensor
    input_shift: Tensor
    input_stats: Tensor
    input_counts: Tensor
    input_missflow: Tensor
    dense_idx: Tensor
    dense_pos: Tensor
    zero_flows: Any
    register_buffer: Any
    register_load_state_dict_pre_hook: Any
    state_dict: Any
    load_state_dict: Any

    def init_params(self, plan: KernelPlan) -> None:
        """Create ``sum_logits``, ``input_raw`` and the buffers from the plan's values."""
        num_groups = len(plan.group_size)
        group = np.where(plan.param_group >= 0, plan.param_group, num_groups)
        w = np.where(plan.param_group >= 0, plan.params, 0.0)
        z = np.zeros(num_groups + 1)
        np.add.at(z, group, w)
        with np.errstate(divide="ignore"):
            # an all-zero group keeps raw 0 and a -inf normalizer (weights 0, never NaN)
            raw = np.where((plan.param_group >= 0) & (z[group] > 0), np.log(w), 0.0)
            lognorm = np.where(z > 0, np.log(np.where(z > 0, z, 1.0)), -np.inf)
        self.sum_logits = nn.Parameter(_t(raw))
        if getattr(self, "torch_layers", True):
            self._init_dense_groups(plan.param_group, num_groups)
            self.register_buffer("sum_group", _t(group.astype(np.int64)), persistent=False)
        self.register_buffer("sum_norm", _t(lognorm))
        self.register_buffer("group_size",
                             _t(np.append(plan.group_size, 1).astype(np.float64)),
                             persistent=False)
        self.register_buffer("sum_flows", torch.zeros(len(plan.params), dtype=torch.float64),
                             persistent=False)
        self._init_inputs(plan)

    def _init_dense_groups(self, param_group: np.ndarray, num_groups: int) -> None:
        """Index tables between the flat weights and a dense ``[groups, Kmax]`` layout, where
        one ``log_softmax`` normalizes every group (padding: an extra ``-inf`` entry)."""
        num = len(param_group)
        real = np.flatnonzero(param_group >= 0)
        order = real[np.argsort(param_group[real], kind="stable")]
        g = param_group[order]
        counts = np.bincount(g, minlength=num_groups)
        kmax = max(int(counts.max(initial=1)), 1)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if num_groups else np.zeros(0, int)
        rank = np.arange(len(order)) - first[g]
        dense = np.full((num_groups, kmax), num, np.int64)
        dense[g, rank] = order
        pos = np.full(num, num_groups * kmax, np.int64)
        pos[order] = g * kmax + rank
        self.register_buffer("dense_idx", _t(dense.reshape(-1)), persistent=False)
        self.register_buffer("dense_pos", _t(pos), persistent=False)
        self._dense_shape = (num_groups, kmax)

    def _init_inputs(self, plan: KernelPlan) -> None:
        q = len(plan.input_params)
        # shift: one log-normalizer per input node (layer i's nodes from _in_node0[i])
        self._in_node0 = list(np.cumsum([0] + [ly.n for ly in plan.input_layers])[:-1])
        self._in_span: dict[int, tuple[int, int] | None] = {}
        self._in_group: dict[int, tuple[int, int] | None] = {}
        self._in_size: dict[int, int] = {}
        for i, ly in enumerate(plan.input_layers):
            self.register_buffer(f"in_vars{i}", _t(ly.vars.astype(np.int64)), persistent=False)
            group = _var_groups(ly.vars) if fam.grouped_rows(ly.dist) else None
            self._in_group[i] = group
            if group is not None:
                uvars = ly.vars[:: group[1]]
                self.register_buffer(f"in_uvars{i}", _t(uvars.astype(np.int64)),
                                     persistent=False)
            if ly.values is not None:
                self.register_buffer(f"in_values{i}", _t(ly.values.astype(np.int64)),
                                     persistent=False)
            size = max(ly.param_size, 1)
            ps = np.asarray(ly.param_start, dtype=np.int64)
            # contiguous: node k's parameters are ps[0] + k * size + (0..size-1)
            contiguous = bool(ly.param_size > 0 and ly.n > 0 and np.array_equal(
                ps, ps[0] + np.arange(ly.n, dtype=np.int64) * size))
            # a backend with its own input kernels reads contiguous rows as views: only each
            # node's first offset is kept (HCLT-256 inputs: 400 MB less on the device)
            compact = contiguous and not getattr(self, "torch_layers", True)
            pidx = ps[:, None] if compact else ps[:, None] + np.arange(size)[None, :]
            self.register_buffer(f"in_pidx{i}", torch.from_numpy(pidx.copy()), persistent=False)
            self._in_size[i] = size
            self._in_span[i] = (int(ps[0]), ly.n * size) if contiguous else None
        raw, shift = self._input_values(plan)
        self.input_raw = nn.Parameter(raw)
        self.register_buffer("input_shift", shift)
        self.register_load_state_dict_pre_hook(_shift_per_node)
        m = max(q, 1) if getattr(self, "torch_layers", True) else 1  # else: backend's own
        self.register_buffer("input_stats", torch.zeros(m, 3, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("input_counts", torch.zeros(m, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("input_missflow", torch.zeros(m, dtype=torch.float64),
                             persistent=False)

    def _input_values(self, plan: KernelPlan) -> tuple[Tensor, Tensor]:
        """``input_raw`` ``[max(q, 1)]`` and ``input_shift`` ``[max(nodes, 1)]`` from the
        plan's native input parameters: float64, on the host (a backend may compute them
        where its parameters live instead)."""
        q = len(plan.input_params)
        raw = np.zeros(q)
        shift = np.zeros(max(sum(ly.n for ly in plan.input_layers), 1))
        for i, ly in enumerate(plan.input_layers):
            if not ly.param_size:
                continue
            size, span = self._in_size[i], self._in_span[i]
            if span is not None:  # slices, not fancy indexing (51M parameters for PD-256)
                a, b = span[0], span[0] + span[1]
                r, s = fam.to_raw(ly.dist, plan.input_params[a:b].reshape(ly.n, size))
                raw[a:b] = r.reshape(-1)
            else:
                pidx = np.asarray(ly.param_start, np.int64)[:, None] + np.arange(size)
                r, s = fam.to_raw(ly.dist, plan.input_params[pidx])
                raw[pidx] = r
            n0 = self._in_node0[i]
            shift[n0: n0 + ly.n] = s[:, 0]
        # raw and shift are this function's own arrays: shared with torch, not copied
        return torch.from_numpy(raw if q else np.zeros(1)), torch.from_numpy(shift)

    # -------------------------------------------------------------- reading
    def log_weights(self) -> Tensor:
        """Flat log sum weights (differentiable; padding ``-inf``), per-group normalized."""
        raw = self.sum_logits
        neg = raw.new_full((1,), -math.inf)
        dense = torch.cat([raw, neg]).index_select(0, self.dense_idx).view(self._dense_shape)
        logw = torch.log_softmax(dense, dim=1) + self.sum_norm[:-1, None]
        return torch.cat([logw.reshape(-1), neg]).index_select(0, self.dense_pos)

    def layer_raw(self, i: int) -> tuple[Tensor, Tensor]:
        """Raw parameters ``[n, size]`` and log-normalizers ``[n, 1]`` of input layer ``i``."""
        pidx = getattr(self, f"in_pidx{i}")
        shift = self.layer_shift(i).unsqueeze(1)
        span = self._in_span.get(i)
        if span is not None:  # untied storage: a view, no copy
            return self.input_raw[span[0]: span[0] + span[1]].view(-1, self._in_size[i]), shift
        return self.input_raw.index_select(0, pidx.reshape(-1)).view(pidx.shape), shift

    def layer_shift(self, i: int) -> Tensor:
        """``[n]`` log-normalizers of input layer ``i``'s nodes (a view of ``input_shift``)."""
        n0 = self._in_node0[i]
        return self.input_shift[n0: n0 + self.plan.input_layers[i].n]

    def source_params(self) -> dict[str, np.ndarray]:
        """The source circuit's parameter store from the current values (float64 numpy)."""
        return self.current_plan().source_params()

    def current_plan(self) -> KernelPlan:
        """The plan with the current parameters in its flat buffers (for ``.pccm`` files)."""
        import dataclasses

        w = np.where(self.plan.param_group >= 0, self.current_weights(), 0.0)
        return dataclasses.replace(self.plan, params=w, input_params=self.current_inputs())

    @torch.no_grad()
    def current_weights(self) -> np.ndarray:
        """The flat linear sum weights as the module computes them (float64, on the host)."""
        return torch.exp(self.log_weights()).detach().cpu().double().numpy()

    @torch.no_grad()
    def current_inputs(self) -> np.ndarray:
        """The native input parameters, laid out like the plan's (float64, on the host)."""
        native = np.array(self.plan.input_params, dtype=np.float64, copy=True)
        for i, ly in enumerate(self.plan.input_layers):
            if ly.param_size:
                pidx = ly.param_start[:, None] + np.arange(ly.param_size)[None, :]
                val = fam.to_native(ly.dist, *self.layer_raw(i))
                native[pidx] = val.detach().cpu().double().numpy()
        return native

    def exact_state(self) -> dict[str, Tensor]:
        """Every value the module computes with, as it holds them: its parameters and
        persistent buffers. ``.pccm`` files store them beside the plan, whose values went
        through ``exp`` and ``log``, so that a loaded module computes bit for bit what the
        saved one did (:meth:`load_exact_state`)."""
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_exact_state(self, state: dict[str, Tensor]) -> bool:
        """Set what :meth:`exact_state` returned, of this backend or another built on this one
        (names this module does not hold are ignored). Returns False, leaving the module as
        it is, when the state lacks one of the module's own names."""
        own = self.state_dict()
        if not set(own) <= set(state):
            return False
        self.load_state_dict({k: state[k] for k in own})
        return True

    def to_circuit(self) -> Any:
        """The source L0 circuit with the current parameters."""
        src = getattr(self, "source_circuit", None)
        if src is None:
            from pccc.ir.errors import PcccError

            raise PcccError("this module does not carry its source circuit (compile it with "
                            "pccc.compile, or load a .pccm that holds one)")
        params = self.source_params()
        return src.with_params({k: v for k, v in params.items() if k in src.params})

    # ------------------------------------------------------------------- EM
    def group_sums(self, x: Tensor) -> Tensor:
        """``[num_groups + 1]`` per-group sums of flat weight values (last: padding).

        Backends may override it with a faster segmented sum (the Triton one does)."""
        return torch.zeros_like(self.sum_norm).index_add(0, self.sum_group, x.to(self.sum_norm))

    @torch.no_grad()
    def set_weights(self, w: Tensor) -> None:
        """Write linear sum weights (flat, padding ignored); logits stay consistent."""
        real = self.sum_group < self.sum_norm.shape[0] - 1
        w = torch.where(real, w.to(self.sum_logits.dtype), torch.zeros_like(w))
        z = self.group_sums(w)
        live = real & (z[self.sum_group] > 0)
        self.sum_logits.copy_(torch.where(live, torch.log(w), torch.zeros_like(w)))
        self.sum_norm.copy_(torch.where(z > 0, torch.log(torch.where(z > 0, z, 1.0)),
                                        torch.full_like(z, -math.inf)))

    @torch.no_grad()
    def em_step(self, step_size: float, pseudocount: float) -> None:
        """One EM step from the accumulated flows; then the flows are zeroed."""
        eta, alpha = float(step_size), float(pseudocount)
        group = self.sum_group
        w = torch.exp(self.log_weights())
        f = self.sum_flows.to(w.dtype)
        den = self.group_sums(f)[group] + alpha
        ok = den > 0
        target = (f + alpha / self.group_size.to(w.dtype)[group]) / torch.where(
            ok, den, torch.ones_like(den))
        self.set_weights(torch.where(ok, (1 - eta) * w + eta * target, w))
        self._em_inputs(eta, alpha)
        self.zero_flows()

    def _em_inputs(self, eta: float, alpha: float) -> None:
        updates = []
        stats = self.input_stats.to(self.input_raw.dtype)
        for i, ly in enumerate(self.plan.input_layers):
            if not ly.param_size:
                continue
            pidx = getattr(self, f"in_pidx{i}")
            native = fam.to_native(ly.dist, *self.layer_raw(i))
            counts = self.input_counts.to(native.dtype)
            st = counts[pidx] if fam.stats_are_counts(ly.dist) else stats[pidx[:, 0]]
            fm = self.input_missflow.to(native.dtype)[pidx[:, 0]]
            st = fam.complete_stats(ly.dist, dict(ly.attrs), native, st, fm)
            new = fam.em_update(ly.dist, native, st, eta, alpha, attrs=dict(ly.attrs))
            updates.append((i, ly.dist, pidx, new))
        for i, dist, pidx, new in updates:  # write after reading: tied nodes update once
            r, s = fam.to_raw_tensor(dist, new.detach())
            flat = pidx.reshape(-1)
            self.input_raw.index_copy_(0, flat, r.to(self.input_raw).reshape(-1))
            self.layer_shift(i).copy_(s[:, 0])


def _shift_per_node(module: Any, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` of a state dict saved before ``input_shift`` held one
    log-normalizer per input node (it held one per input parameter, each node's value at
    every one of its parameters): each node's value is read at its first parameter."""
    key = prefix + "input_shift"
    old = state_dict.get(key)
    nodes = module.input_shift.numel()
    if old is None or old.numel() == nodes or old.numel() != module.input_raw.numel():
        return
    new = torch.zeros(nodes, dtype=old.dtype, device=old.device)
    for i, ly in enumerate(module.plan.input_layers):
        if ly.param_size:
            n0 = module._in_node0[i]
            new[n0: n0 + ly.n] = old[getattr(module, f"in_pidx{i}")[:, 0].to(old.device)]
    state_dict[key] = new
