"""Parameters of a compiled circuit, shared by every backend: the input layers' index tables,
reading the parameters back (``current_plan``, ``to_circuit``) and the exact state.

The parametrization is :mod:`pccc.backends.module`'s; the executor makes the parameters
(:meth:`~pccc.backends.executor.Executor.init_params`) and computes with them.
"""

from __future__ import annotations

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
    executor: Any
    input_raw: nn.Parameter
    input_shift: Tensor
    input_stats: Tensor
    input_counts: Tensor
    input_missflow: Tensor
    current_weights: Any
    register_buffer: Any
    register_load_state_dict_pre_hook: Any
    state_dict: Any
    load_state_dict: Any

    def init_inputs(self, plan: KernelPlan) -> None:
        """The input layers' index tables, ``input_raw``, ``input_shift`` (values from the
        executor's :meth:`~pccc.backends.executor.Executor.input_values`) and the input
        layers' EM statistics (the executor's own where it keeps them elsewhere)."""
        q = len(plan.input_params)
        own_kernels = not self.executor.torch_layers
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
            compact = contiguous and own_kernels
            pidx = ps[:, None] if compact else ps[:, None] + np.arange(size)[None, :]
            self.register_buffer(f"in_pidx{i}", torch.from_numpy(pidx.copy()), persistent=False)
            self._in_size[i] = size
            self._in_span[i] = (int(ps[0]), ly.n * size) if contiguous else None
        raw, shift = self.executor.input_values(self, plan)
        self.input_raw = nn.Parameter(raw)
        self.register_buffer("input_shift", shift)
        self.register_load_state_dict_pre_hook(_shift_per_node)
        m = 1 if own_kernels else max(q, 1)  # (a backend with its own kernels keeps its own)
        self.register_buffer("input_stats", torch.zeros(m, 3, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("input_counts", torch.zeros(m, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("input_missflow", torch.zeros(m, dtype=torch.float64),
                             persistent=False)

    # -------------------------------------------------------------- reading
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
    def current_inputs(self) -> np.ndarray:
        """The native input parameters, laid out like the plan's (float64, on the host); those
        the executor computes with from copies of its own are its copies."""
        native = np.array(self.plan.input_params, dtype=np.float64, copy=True)
        for i, ly in enumerate(self.plan.input_layers):
            if ly.param_size:
                pidx = ly.param_start[:, None] + np.arange(ly.param_size)[None, :]
                val = fam.to_native(ly.dist, *self.layer_raw(i))
                native[pidx] = val.detach().cpu().double().numpy()
        self.executor.own_inputs(self, native)
        return native

    def exact_state(self) -> dict[str, Tensor]:
        """Every value the module computes with, as it holds them: its parameters and
        persistent buffers. ``.pccm`` files store them beside the plan, whose values went
        through ``exp`` and ``log``, so that a loaded module computes bit for bit what the
        saved one did (:meth:`load_exact_state`); the executor adds what its own copies need
        (:meth:`~pccc.backends.executor.Executor.exact_state`)."""
        state = {k: v.detach() for k, v in self.state_dict().items()}
        state.update(self.executor.exact_state(self))
        return state

    def load_exact_state(self, state: dict[str, Tensor]) -> bool:
        """Set what :meth:`exact_state` returned, of this backend or another built on this one
        (names this module does not hold are ignored). Returns False, leaving the module as
        it is, when the state lacks one of the module's own names."""
        own = self.state_dict()
        loaded = set(own) <= set(state)
        if loaded:
            self.load_state_dict({k: state[k] for k in own})
        return self.executor.load_exact_state(self, state, loaded)

    def to_circuit(self) -> Any:
        """The source L0 circuit with the current parameters."""
        src = getattr(self, "source_circuit", None)
        if src is None:
            from pccc.ir.errors import PcccError

            raise PcccError("this module does not carry its source circuit (compile it with "
                            "pccc.compile, or load a .pccm that holds one)")
        params = self.source_params()
        return src.with_params({k: v for k, v in params.items() if k in src.params})


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
