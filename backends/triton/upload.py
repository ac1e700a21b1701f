"""The first copy of a plan's parameter values to the device, on background threads.

``pccc.compile`` ends when the module can run its first batch, and the values are the
largest thing it moves: HCLT-256's are 0.7 GB of float64 on the host (36M sum weights, 51M
categorical parameters). The copy starts as soon as the plan exists and runs while the
kernels are loaded and the index tables built (``compiled.py`` waits for it last).

On a GPU each of ``threads`` threads (the option ``upload_threads``) copies its share of
``STAGE``-value slices through two pinned buffers of its own: a host copy into one buffer
(numpy releases the GIL) while the other buffer's DMA runs, on a stream of the thread's own.
A copy straight from pageable memory would be staged by the driver one transfer at a time.
Elsewhere (the CPU interpreter) the slices are copied as they are.
"""

from __future__ import annotations

import contextlib
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pccc.ir.plan import KernelPlan

#: float64 values per slice (8 MB: one pinned buffer; the device temporaries stay small)
STAGE = 1 << 20


class Upload:
    """The values being copied: ``result()`` waits for them (``(weights, inputs)``), ready
    for use on any stream."""

    def __init__(self, futures: list[Future[None]], store: Tensor, inputs: Tensor):
        self._futures, self._out = futures, (store, inputs)

    def result(self) -> tuple[Tensor, Tensor]:
        for f in self._futures:
            f.result()  # re-raises a worker's error
        return self._out


def start_upload(plan: KernelPlan, dev: torch.device, threads: int = 4) -> Upload:
    """Start copying the plan's values to ``dev``: the sum weights in float32, padded with
    zeros to whole 64-weight tiles, and the native input parameters as they are (float64;
    ``compiled.py`` converts them on the device). ``threads``: threads copying slices on a
    GPU (0: straight from pageable memory, on one thread)."""
    if dev.type == "cuda" and dev.index is None:  # the threads' current device may differ
        dev = torch.device("cuda", torch.cuda.current_device())
    n, q = len(plan.params), len(plan.input_params)
    store = torch.empty(-(-n // 64) * 64, dtype=torch.float32, device=dev)
    store[n:] = 0.0
    inputs = torch.empty(q, dtype=torch.float64, device=dev)
    jobs = [(dst, src, k) for dst, src in ((store, plan.params), (inputs, plan.input_params))
            for k in range(0, len(src), STAGE)]
    threads = min(threads, len(jobs)) if dev.type == "cuda" else 0
    if threads == 0:
        slices = _host_slices(jobs)  # on this thread: see _host_slices
        work = [lambda: _copy_pageable(slices, dev)]
    else:
        ready = torch.cuda.Event()
        ready.record()  # the blocks' earlier users, and the zero fill, come first
        work = [_stager(jobs[i::threads], dev, ready) for i in range(threads)]
    pool = ThreadPoolExecutor(len(work), thread_name_prefix="pccc-upload")
    try:
        return Upload([pool.submit(w) for w in work], store, inputs)
    finally:
        pool.shutdown(wait=False)


def _host_slices(jobs: list[tuple[Tensor, np.ndarray, int]]) -> list[tuple[Tensor, Tensor]]:
    """``(destination view, host tensor)`` per slice (no copy; the plan's arrays may be
    read-only: they are only read). Made on the calling thread: ``warnings.catch_warnings``
    swaps the process's filters and is not thread-safe."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return [(dst[k: k + min(STAGE, len(src) - k)],
                 torch.from_numpy(np.ascontiguousarray(src[k: k + STAGE]))) for dst, src, k in jobs]


def _copy_pageable(slices: list[tuple[Tensor, Tensor]], dev: torch.device) -> None:
    ctx: Any = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with ctx:
        for dst, t in slices:
            dst.copy_(t.to(dev))
        if dev.type == "cuda":
            torch.cuda.current_stream(dev).synchronize()


def _stager(jobs: list[tuple[Tensor, np.ndarray, int]], dev: torch.device,
            ready: torch.cuda.Event) -> Any:
    """One thread's copies: host slice -> pinned buffer -> device (float64) -> destination
    (converted there), alternating between two buffers; a buffer is refilled only after its
    last transfer has finished (its event)."""

    def run() -> None:
        with torch.cuda.device(dev):
            stream = torch.cuda.Stream(dev)
            stream.wait_event(ready)
            pinned = [torch.empty(STAGE, dtype=torch.float64, pin_memory=True) for _ in range(2)]
            host = [p.numpy() for p in pinned]
            scratch = [torch.empty(STAGE, dtype=torch.float64, device=dev) for _ in range(2)]
            done: list[torch.cuda.Event | None] = [None, None]
            with torch.cuda.stream(stream):
                for j, (dst, src, k) in enumerate(jobs):
                    b, m = j % 2, min(STAGE, len(src) - k)
                    ev = done[b]
                    if ev is not None:
                        ev.synchronize()
                    np.copyto(host[b][:m], src[k: k + m])
                    if dst.dtype == torch.float64:
                        dst[k: k + m].copy_(pinned[b][:m], non_blocking=True)
                    else:
                        scratch[b][:m].copy_(pinned[b][:m], non_blocking=True)
                        dst[k: k + m].copy_(scratch[b][:m])
                    ev = torch.cuda.Event()
                    ev.record(stream)
                    done[b] = ev
            stream.synchronize()

    return run
