"""What is allocated at a workload's peak GPU memory, by where it was allocated.

``gpu_bench.py`` reports each workload's peak (``torch.cuda.max_memory_allocated``) through the
compile, through the first batch and overall. This script says what the peak is made of: it
runs the same steps (the structure from the data on the GPU, the compile, the first batch,
``--batches`` batches of mini-batch EM and a no-grad test batch) with torch's allocation
history recorded (``torch.cuda.memory._record_memory_history``), then replays the recorded
allocations and frees in order, finds the moment the live bytes were largest, and groups the
blocks live then by the innermost frame of this repository that allocated them (file, line,
function), largest first. The data's tensors, made before the recording starts, are counted
apart (``data``).

    python benchmarks/memory_peak.py --which hclt32,hclt128 [--mnist .bench/mnist.npz]
    python benchmarks/memory_peak.py --which hclt128 --option flows_in_nodes=true

``--quick`` checks the replay on a synthetic trace (no GPU). The replay itself
(:func:`peak_live`) reads a snapshot's ``device_traces`` events: ``alloc`` adds a block,
``free_completed`` removes it (``free_requested`` too, where no completion follows: the
caching allocator frees a block for reuse once its stream is done with it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

MiB = 2 ** 20


def _site(frames: Sequence[dict]) -> str:
    """The innermost frame of this repository (not of torch or of this script), as
    ``path:line function``; the innermost frame at all where none is."""
    for f in frames:
        name = f.get("filename", "")
        if name.startswith(ROOT) and not name.endswith("memory_peak.py"):
            return f"{os.path.relpath(name, ROOT)}:{f.get('line', 0)} {f.get('name', '')}"
    if frames:
        f = frames[0]
        return f"{os.path.basename(f.get('filename', '?'))}:{f.get('line', 0)} {f.get('name', '')}"
    return "(no stack)"


def peak_live(events: Iterable[dict]) -> tuple[int, int, dict[str, int]]:
    """Replay allocation events; return (peak live bytes, the event index of the peak, the
    bytes live at the peak per allocation site)."""
    events = list(events)
    live: dict[int, int] = {}
    total = best = best_i = 0
    for i, e in enumerate(events):
        act, addr, size = e.get("action"), e.get("addr"), int(e.get("size", 0))
        if act == "alloc":
            live[addr] = size
            total += size
            if total > best:
                best, best_i = total, i
        elif act in ("free_requested", "free_completed") and addr in live:
            total -= live.pop(addr)
    sites: dict[str, int] = defaultdict(int)
    blocks: dict[int, tuple[int, str]] = {}
    for e in events[: best_i + 1]:
        act, addr = e.get("action"), e.get("addr")
        if act == "alloc":
            blocks[addr] = (int(e.get("size", 0)), _site(e.get("frames") or []))
        elif act in ("free_requested", "free_completed"):
            blocks.pop(addr, None)
    for size, site in blocks.values():
        sites[site] += size
    return best, best_i, dict(sites)


def report(name: str, peak: int, sites: dict[str, int], data: int, before: int, measured: float,
           top: int = 14) -> None:
    print(f"\n{name}: peak {measured:.3f} GiB (torch.cuda.max_memory_allocated); replayed "
          f"{(peak + before) / 2**30:.3f} GiB = data {data / MiB:.0f} MiB + other tensors "
          f"made before the recording {(before - data) / MiB:.0f} MiB + "
          f"{peak / MiB:.0f} MiB recorded, of which:")
    rows = sorted(sites.items(), key=lambda kv: -kv[1])
    for site, size in rows[:top]:
        print(f"  {size / MiB:9.1f} MiB  {site}")
    rest = sum(s for _, s in rows[top:])
    if rest:
        print(f"  {rest / MiB:9.1f} MiB  ({len(rows) - top} more sites)")


def run(name: str, x, xg, xte, options: dict, batches: int) -> None:  # noqa: ANN001
    import gc

    import torch

    import pccc
    from benchmarks.gpu_bench import BATCH, build, epoch, test_ll
    from pccc.optim import MiniBatchEM

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    data = xg.numel() * xg.element_size() + xte.numel() * xte.element_size()
    torch.cuda.memory._record_memory_history(max_entries=2_000_000)
    try:
        c = build(name, x, xg)
        model = pccc.compile(c, backend="triton", device="cuda", precision="tf32", **options)
        model.param_grads = False
        opt = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
        epoch(model, opt, xg, batches)
        test_ll(model, xte[: 2 * BATCH])
        torch.cuda.synchronize()
        snap = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    measured = torch.cuda.max_memory_allocated() / 2**30
    peak, _, sites = peak_live(snap["device_traces"][0])
    report(name, peak, sites, data, before, measured)
    del model, opt, c


def quick() -> None:
    fr = [{"filename": os.path.join(ROOT, "pccc", "x.py"), "line": 3, "name": "f"}]
    ev = [dict(action="alloc", addr=1, size=100, frames=fr), dict(action="alloc", addr=2, size=50),
          dict(action="free_requested", addr=1, size=100), dict(action="alloc", addr=3, size=70),
          dict(action="free_completed", addr=1, size=100)]
    peak, i, sites = peak_live(ev)
    assert (peak, i) == (150, 1), (peak, i)
    report("synthetic", peak, sites, 0, 0, 150 / 2**30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--which", default="hclt32,hclt128")
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        quick()
        return 0
    import numpy as np
    import torch

    from benchmarks.bench_options import parse_options

    os.environ["TRITON_INTERPRET"] = "0"
    d = np.load(a.mnist)
    x = d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64)
    xt = d["x_test"].reshape(len(d["x_test"]), -1).astype(np.int64)
    xg, xte = torch.as_tensor(x, device="cuda"), torch.as_tensor(xt, device="cuda")
    for name in (w for w in a.which.split(",") if w):
        run(name, x, xg, xte, parse_options(a.option), a.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
