"""The Triton executor's EM side: the EM-only backward pass, the EM step (on a stream of its
own in EM-only training, ``overlap.py``), and the EM statistics' bookkeeping (see
:class:`~pccc.backends.triton.compiled.TritonExecutor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pccc.backends.triton.families import family
from pccc.backends.triton.inputs import InputTables, em_update_inputs
from pccc.backends.triton.overlap import EMStream
from pccc.backends.triton.runtime import DevicePlan

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit


class EMSteps:
    """The executor's EM backward, EM step and EM statistics."""

    device: torch.device
    dp: DevicePlan
    em: EMStream
    kernels: Any
    tables: list[InputTables]
    em_counts: Tensor
    em_nstats: list[Tensor]
    _w: Tensor
    _theta: Tensor
    materialize: Any
    drop_logits: Any
    owes_logits: Any
    _cnorm: list[Tensor]
    _flows_owed: bool
    _em_zero_counts: bool
    _synced: tuple[int, ...] | None
    _static: Any
    _training_flow: Any
    _run: Any
    _param_key: Any
    sync_params: Any

    @property
    def overlap_em(self) -> bool:
        """Whether EM steps run on a stream of their own (see ``overlap.py``)."""
        return self.em.enabled

    @overlap_em.setter
    def overlap_em(self, on: bool) -> None:
        self.em.enabled = on and self.device.type == "cuda"
    def _em_backward(self, m: CompiledCircuit, batch: int, store: bool | None = None
                     ) -> tuple[Any, Callable[[], None]]:
        """The backward pass of EM statistics only, as ``(key, fn)``: scale 1, flows and
        input statistics added straight into the accumulators (no scratch buffers; its torch
        operations touch the static buffers only, so the forward can record it for the
        parallel compile before it runs). ``store``: the EM flows of the weights an EM step
        left void are stored (default: whether the last step did)."""
        b = self._static(m, batch)
        dp = self.dp
        flows = m._buffers["sum_flows"]
        assert flows is not None
        store = self._flows_owed if store is None else store
        flow = self._training_flow(b)

        def direct() -> None:
            b.flag.zero_()
            b.ones.fill_(1.0)
            dp.sum_backward(b.node, flow, b.ones, b.flag, batch, self._w, flows, flows,
                            em_direct=True, inplace=True, store=store)
            dp.input_backward(b.node if flow is None else flow, b.xt, b.mt, b.ones, b.flag,
                              batch, self.em_counts, self.em_nstats, self.em_counts,
                              self.em_nstats, zero=False, em=False)

        return ("bwd-em", batch, store), direct

    def _em_kernels(self, m: CompiledCircuit) -> tuple[Any, Callable[[], None]]:
        """The EM step's kernel launches alone, as ``(key, fn)``: the weights' update and the
        input families' own EM kernels, launched through the device plan's kernel table
        (``dp.k``) and no torch operation on the parameters, so that the first forward's
        parallel compile can record them (the EM step's torch operations need no JIT)."""
        dp = self.dp
        raw, shift = m._parameters["input_raw"], m._buffers["input_shift"]
        flows = m._buffers["sum_flows"]
        assert raw is not None and shift is not None and flows is not None

        def launches() -> None:  # (EM-only training: the logits are not kept, see em_step)
            dp.em_weights(self._w, flows, None, 0.1, 0.1, True)
            for tb, ns, c in zip(self.tables, self.em_nstats, self._cnorm):
                fm = family(tb.layer.dist)
                if tb.layer.param_size and fm.learns:
                    fm.em_kernel(dp.k, tb, raw.detach(), shift, c, self.em_counts, ns, 0.1,
                                 0.1)

        return ("em-kernels",), launches

    @torch.no_grad()
    def em_step(self, m: CompiledCircuit, step_size: float, pseudocount: float) -> None:
        """One EM step from the accumulated flows (weights and inputs); flows are zeroed."""
        eta, alpha = step_size, pseudocount
        self.sync_params(m)
        self._clear_owed(m)  # no backward since the last step: its flows are zero
        # (straight from nn.Module's tables: no settling of the void flows)
        # EM-only training updates the kernels' weights alone: the logits are written when
        # next read (materialize); with gradients an optimizer may hold them: kept in step
        if m.param_grads:
            self.materialize(m)
        else:
            self.drop_logits(m)
        rawp, shift = m._parameters["input_raw"], m._buffers["input_shift"]
        logitsp, flows = m._parameters["sum_logits"], m._buffers["sum_flows"]
        norm = m._buffers["sum_norm"]
        assert rawp is not None and shift is not None and logitsp is not None
        assert flows is not None and norm is not None
        raw = rawp.detach()
        logits = None if self.owes_logits(m) else logitsp.detach()

        def run() -> None:
            gsum = self.dp.em_weights(self._w, flows, logits, eta, alpha, True)
            z = norm[:-1]
            z.copy_(torch.where(gsum + alpha > 0, torch.log((1 - eta) * torch.exp(z) + eta), z))
            em_update_inputs(self.tables, self._theta, raw, shift, self._cnorm,
                             self.em_counts, self.em_nstats, eta, alpha, self.kernels)
            if self._em_zero_counts:  # the cat_em kernel zeroes the rows it updates
                self.em_counts.zero_()
            for ns in self.em_nstats:
                ns.zero_()

        # (on a stream of its own in EM-only training: with gradients, a torch optimizer may
        # hold the parameters, and its in-place updates would not wait; see overlap.py)
        key = ("em", eta, alpha, None if logits is None else logits.data_ptr())
        self.em.launch(lambda: self._run(m, key, run, scratch_only=False),
                       overlap=not m.param_grads)
        self._synced = self._param_key(m)  # both sides were updated together
        # the weights whose next backward stores their flows keep them: void until then
        self._flows_owed = True

    def settle(self, m: CompiledCircuit, deferred: bool = False) -> None:
        """Order the current stream after the EM step in flight (once per stream and step, no
        host wait); ``deferred``: also zero the EM flows it left void (see ``_flows_owed``)."""
        self.em.wait()
        if deferred:
            self._clear_owed(m)

    def _clear_owed(self, m: CompiledCircuit) -> None:
        """Zero the EM flows an EM step left void (see ``_flows_owed``), on the current
        stream."""
        if self._flows_owed:
            self._flows_owed = False
            self.em.wait()
            m._buffers["sum_flows"].zero_()  # type: ignore[union-attr]

    def em_statistics(self, m: CompiledCircuit) -> list[Tensor]:
        """The EM statistics accumulated since the last EM step, the tensors :meth:`em_step`
        reads (void flows zeroed first): edits in place on the current stream reach it."""
        self._clear_owed(m)
        self.em.wait()
        return [m._buffers["sum_flows"], self.em_counts, *self.em_nstats]  # type: ignore

    def zero_flows(self, m: CompiledCircuit) -> None:
        """Forget the EM statistics accumulated since the last EM step."""
        self.em.wait()
        self._flows_owed = False
        m._buffers["sum_flows"].zero_()  # type: ignore[union-attr]
        self.em_counts.zero_()
        for ns in self.em_nstats:
            ns.zero_()
