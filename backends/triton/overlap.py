"""The EM step on a stream of its own, overlapped with the host's next batch.

A training loop syncs once per batch (``float(ll.mean())``), and the host then needs a while
to launch the next forward: the GPU idles meanwhile. With the EM update on a stream of its
own, that sync waits for the forward and backward only; the update runs while the host gets
the next batch ready, and the next pass waits for it on the GPU, not on the host.

:class:`EMStream` is the Triton executor's: :meth:`EMStream.launch` runs an update on the
side stream and records an event; :meth:`EMStream.wait` orders the current stream after it
(once per stream and step). The executor waits at each of its entry points, and the module
(:class:`~pccc.backends.module.CompiledCircuit`) through
:meth:`~pccc.backends.executor.Executor.settle` before it hands out a parameter or buffer
(``model.sum_logits``, ``parameters()``, ``state_dict()``, ...). A tensor fetched from the
module *before* an EM step and used directly afterwards is not covered: call
``model.settle()`` (or ``torch.cuda.synchronize()``) first, or compile with
``overlap_em=False``. The executor overlaps only where that is unlikely: EM-only training
(``param_grads = False``), where no torch optimizer updates these tensors in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class EMStream:
    """The side stream of EM updates and the event after the last one.

    Args:
        device: the module's device (a CUDA device, or nothing overlaps).
        enabled: run updates on the side stream (the option ``overlap_em``).
    """

    def __init__(self, device: torch.device, enabled: bool):
        self.device = device
        #: run updates on the side stream (CUDA only)
        self.enabled = enabled and device.type == "cuda"
        #: an update was launched on the side stream; ``waited``: the streams ordered after it
        self.pending = False
        self.waited: set[Any] = set()
        self.stream: Any = None
        self.done: Any = None

    def wait(self) -> None:
        """Order the current stream after the last update (no host wait; once per stream)."""
        if self.pending:
            cur = torch.cuda.current_stream(self.device)
            if cur not in self.waited:
                cur.wait_event(self.done)
                self.waited.add(cur)

    def drain(self) -> None:
        """Wait on the host for the last update (before a CUDA graph is recorded: a capture
        must not wait on an event recorded outside it)."""
        if self.pending:
            self.done.synchronize()
            self.pending = False

    def launch(self, run: Callable[[], None], overlap: bool = True) -> None:
        """Call ``run`` (it launches the update) after the current stream's work: on the side
        stream where overlapping (``enabled`` and ``overlap``), else on the current stream."""
        self.wait()
        if not (self.enabled and overlap):
            run()
            return
        if self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
            self.done = torch.cuda.Event()
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            run()
            self.done.record(self.stream)
        self.pending = True
        self.waited = set()
