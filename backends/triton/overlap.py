"""The EM step on a stream of its own, overlapped with the host's next batch.

A training loop syncs once per batch (``float(ll.mean())``), and the host then needs a while
to launch the next forward: the GPU idles meanwhile. With the EM update on the module's own
stream, that sync waits for the forward and backward only; the update runs while the host
gets the next batch ready, and the next pass waits for it on the GPU, not on the host.

Every read of the tensors an update writes waits for it first, on the reader's current stream
(once per stream and step): the module's passes, attribute access (``model.sum_logits``,
``model.sum_norm``, ...), ``parameters()``, ``buffers()``, ``state_dict()``,
``load_state_dict()`` and ``.to()``. A tensor fetched from the module *before* an EM step and
used directly afterwards is not covered: call :meth:`EMOverlap.settle_em` (or
``torch.cuda.synchronize()``) first, or turn the overlap off (``model.overlap_em = False``,
or ``PCCC_OVERLAP_EM=0`` before the module is made). The module overlaps only where that is
unlikely: EM-only training (``param_grads = False``), where no torch optimizer updates these
tensors in place.

Part of what a step writes may be left to a later read (``DEFERRED``: the zeros of
``sum_flows`` that the next backward overwrites), through :meth:`_settle_em`, on the CPU too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

#: the module's tensors an EM step writes, as attributes ``nn.Module`` resolves
EM_WRITES = frozenset({"sum_logits", "input_raw", "sum_norm", "input_shift", "sum_flows"})
#: those of them an EM step may leave to be written on their first read
DEFERRED = frozenset({"sum_flows"})
#: ``nn.Module`` methods that read every tensor: they settle the last EM step first
WHOLE_READS = ("named_parameters", "named_buffers", "state_dict", "load_state_dict", "_apply")


def overlap_default() -> bool:
    """Whether new modules overlap their EM steps (``PCCC_OVERLAP_EM``, default on)."""
    return os.environ.get("PCCC_OVERLAP_EM", "1") != "0"


class EMOverlap:
    """Mixin for an ``nn.Module``: :meth:`launch_em` runs an update on a side stream and every
    access to the tensors it writes (``EM_WRITES``) waits for it (see the module docstring)."""

    _em_stream: Any
    _em_done: Any
    _em_pending: bool
    _em_waited: set[Any]
    _em_deferred: bool
    overlap_em: bool

    def _init_overlap(self, device: torch.device, enabled: bool) -> None:
        #: an update ran on the side stream; ``_em_waited``: the streams ordered after it
        self._em_pending = False
        self._em_waited = set()
        #: an EM step left part of its writes (``DEFERRED``) to the first read
        self._em_deferred = False
        self._em_stream = self._em_done = None
        #: run EM steps on the module's own stream (CUDA only; see the module docstring)
        self.overlap_em = enabled and device.type == "cuda"

    def wait_em(self) -> None:
        """Order the current stream after the last EM step (no host wait; once per stream)."""
        if self.__dict__.get("_em_pending"):
            cur = torch.cuda.current_stream(self._em_stream.device)
            if cur not in self._em_waited:
                cur.wait_event(self._em_done)
                self._em_waited.add(cur)

    def settle_em(self) -> None:
        """Order the current stream after the last EM step and write what it deferred."""
        self.wait_em()
        if self.__dict__.get("_em_deferred"):
            self._em_deferred = False
            self._settle_em()

    def _settle_em(self) -> None:
        """Write what the last EM step deferred (``DEFERRED``), on the current stream."""

    def launch_em(self, device: torch.device, run: Callable[[], None],
                  overlap: bool = True) -> None:
        """Call ``run`` (it launches the update) after the current stream's work: on the
        module's stream where overlapping (``overlap_em`` and ``overlap``), else on the
        current stream."""
        self.wait_em()
        if not (self.overlap_em and overlap):
            run()
            return
        if self._em_stream is None:
            self._em_stream = torch.cuda.Stream(device)
            self._em_done = torch.cuda.Event()
        self._em_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(self._em_stream):
            run()
            self._em_done.record(self._em_stream)
        self._em_pending = True
        self._em_waited = set()

    def __getattr__(self, name: str) -> Any:
        if name in EM_WRITES:
            d = self.__dict__
            if name in DEFERRED and d.get("_em_deferred"):
                self.settle_em()
            elif d.get("_em_pending"):
                self.wait_em()
        return super().__getattr__(name)  # type: ignore[misc]

    def zero_grad(self, set_to_none: bool = True) -> None:
        # gradients only, which no EM step writes: no wait (a training loop calls this
        # between the step and its per-batch sync)
        pending, deferred = self._em_pending, self._em_deferred
        self._em_pending = self._em_deferred = False
        try:
            super().zero_grad(set_to_none)  # type: ignore[misc]
        finally:
            self._em_pending = pending or self._em_pending
            self._em_deferred = deferred or self._em_deferred


def _settling(name: str) -> Callable[..., Any]:
    """``nn.Module``'s method ``name``, after :meth:`EMOverlap.settle_em`."""
    def method(self: EMOverlap, *args: Any, **kwargs: Any) -> Any:
        self.settle_em()
        return getattr(super(EMOverlap, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in WHOLE_READS:
    setattr(EMOverlap, _name, _settling(_name))
