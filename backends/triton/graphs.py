"""The Triton executor's static buffers and its pass runner: each pass (forward, backward, EM
step) is a fixed sequence of launches on buffers of one column stride, run eagerly or, on a
GPU, recorded once per key as a CUDA graph and replayed (see
:class:`~pccc.backends.triton.compiled.TritonExecutor`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pccc.backends.triton.options import TritonOptions
from pccc.backends.triton.overlap import EMStream
from pccc.backends.triton.prejit import enabled as prejit_enabled
from pccc.backends.triton.prejit import prejit
from pccc.backends.triton.runtime import DevicePlan

if TYPE_CHECKING:
    from pccc.backends.module import CompiledCircuit

#: CUDA graphs kept per module (one per batch size and phase; the oldest is dropped)
MAX_GRAPHS = 12


@dataclass
class _Buffers:
    """Static buffers of one column stride (the largest batch seen, rounded up)."""

    stride: int
    node: Tensor
    flow: Tensor | None
    """``[rows, stride]`` node flows (made on first need: not where the flows of every pass
    that runs stay in the node rows, ``DevicePlan.in_nodes``)"""
    xt: Tensor
    mt: Tensor
    scale: Tensor
    flag: Tensor
    ones: Tensor
    x_in: dict[Any, Tensor] = field(default_factory=dict)
    roots: Tensor | None = None
    """``[num_roots, stride]``: the roots' flows of a backward pass whose upstream gradient
    differs between the roots of an example (made on first need)"""



class PassRunner:
    """The executor's static buffers (:meth:`_static`) and pass runner (:meth:`_run`)."""

    options: TritonOptions
    device: torch.device
    dp: DevicePlan
    em: EMStream
    parallel_jit: bool
    jit_workers: int
    use_graphs: bool
    _sbufs: _Buffers | None
    _graphs: dict[Any, Any]
    _prejitted: set[Any]
    startup_log: list[dict[str, Any]]
    _first_done: set[Any]
    worker_log: list[dict[str, Any]]
    settle: Any

    def _zeros(self, *shape: int) -> Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def _static(self, m: CompiledCircuit, batch: int) -> _Buffers:
        """Buffers wide enough for ``batch`` (grown, never shrunk; growing drops the graphs)."""
        b = self._sbufs
        if b is None or b.stride < batch:
            stride = self.dp.stride_for(batch)
            self._graphs.clear()
            self._sbufs = None
            v = max(m.num_vars, 1)
            b = _Buffers(stride, self.dp.new_node_buffer(stride), None, self._zeros(v, stride),
                         torch.ones(v, stride, dtype=torch.int8, device=self.device),
                         self._zeros(stride),
                         torch.zeros(1, dtype=torch.int32, device=self.device),
                         torch.ones(stride, dtype=torch.float32, device=self.device))
            self._sbufs = b
        return b

    def _flow(self, b: _Buffers) -> Tensor:
        """The flow buffer of ``b`` (made now if it is not yet: outside any recording)."""
        if b.flow is None:
            b.flow = self._zeros(self.dp.rows, b.stride)
        return b.flow

    def _training_flow(self, b: _Buffers) -> Tensor | None:
        """The flows of a training backward: None where they stay in the node rows
        (``DevicePlan.in_nodes``), else the flow buffer."""
        return None if self.dp.in_nodes else self._flow(b)

    def _run(self, m: CompiledCircuit, key: Any, fn: Callable[[], None],
             scratch_only: bool = True,
             also: Callable[[], list[tuple[Any, Callable[[], None]]]] | None = None) -> None:
        """Run ``fn`` (a fixed sequence of launches on static buffers): eagerly, or on a GPU
        through a CUDA graph recorded on its first call (after one eager run: Triton's JIT).
        On a GPU the first call of a ``key`` compiles its kernels in parallel first, where
        ``fn``'s torch operations touch scratch buffers only (``scratch_only``); ``also``:
        makes later passes ``[(key, fn)]`` (the backwards a forward predicts) whose kernels
        join the same parallel compile (called only then: not on every forward)."""
        first = key not in self._first_done
        t0 = time.perf_counter()
        kernels = self._prejit_once(key, fn, scratch_only, also)
        if not self.use_graphs:
            t1 = time.perf_counter()
            fn()
            if first:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)  # (once per pass, as below)
                self._first_done.add(key)
                self._log_first(key, kernels, t0, t1, time.perf_counter(), None)
            return
        graph = self._graphs.get(key)
        if graph is None:
            dev = self.device
            # before the call's own run: an EM step in flight is waited for, so that the
            # recording issues no wait on an event recorded outside it (which would
            # invalidate the capture), and the EM flows it left void are zeroed now, not
            # recorded as a zeroing; after the run that zeroing would erase the flows a
            # storing EM backward has just written
            self.settle(m, deferred=True)
            self.em.drain()
            t1 = time.perf_counter()
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                fn()  # the call's own run, on a side stream as capture requires; Triton's JIT
            torch.cuda.current_stream(dev).wait_stream(side)
            if first:
                torch.cuda.synchronize(dev)  # (once per pass: the first run's own time)
            t2 = time.perf_counter()
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            graph = torch.cuda.CUDAGraph()
            try:
                # thread-local: the parallel JIT's and the upload's threads may still load
                # kernels or copy on their own streams while this thread records
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    fn()  # recorded, not run
            except RuntimeError as e:  # this call's results stand (the run above)
                warnings.warn(f"pccc: CUDA graph capture failed ({e}); running eagerly",
                              RuntimeWarning, stacklevel=2)
                self.use_graphs = False
                return
            self._graphs[key] = graph
            if first:
                self._first_done.add(key)
                self._log_first(key, kernels, t0, t1, t2, time.perf_counter())
            return
        graph.replay()

    def _prejit_once(self, key: Any, fn: Callable[[], None], scratch_only: bool,
                     also: Callable[[], list[tuple[Any, Callable[[], None]]]] | None) -> int:
        """The parallel compile of ``key``'s first call (see :meth:`_run`): how many launches
        it was handed (0: none ran)."""
        if key in self._prejitted or not self.parallel_jit:
            return 0
        self._prejitted.add(key)
        if not (scratch_only and prejit_enabled()):
            return 0
        more = []
        for later, later_fn in also() if also is not None else []:
            if later not in self._prejitted:
                self._prejitted.add(later)
                more.append(later_fn)
        return prejit(self.dp, "k", fn, *more, threads=self.options.jit_threads,
                      workers=self.jit_workers, log=self.worker_log.append)

    def _log_first(self, key: Any, kernels: int, t0: float, t1: float, t2: float,
                   t3: float | None) -> None:
        """Add a pass's first call to :attr:`startup_log`: the parallel compile (``kernels``
        launches handed to it), the first run (Triton's JIT of what the parallel compile
        left, and loading), and the CUDA graph's recording."""
        self.startup_log.append({
            "pass": str(key[0]) if isinstance(key, tuple) else str(key),
            "key": repr(key), "parallel_compile_s": round(t1 - t0, 4),
            "compiled_launches": kernels, "first_run_s": round(t2 - t1, 4),
            "graph_capture_s": None if t3 is None else round(t3 - t2, 4)})
