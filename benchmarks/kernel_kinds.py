"""Where the time goes: device time, predicted work and achieved rates per kernel kind of EM
training with the Triton backend.

For a workload of ``gpu_bench.py`` (``hclt32``, ``hclt128``, ``hclt256``, ``pd64``, ``pd256``,
built by its ``build`` over MNIST), this trains ``--warm`` batches of mini-batch EM (batch 512,
step 0.1, pseudocount 0.1, an EM step every batch; the first batch compiles the kernels and
records the CUDA graphs), then ``--steps`` more under ``torch.profiler`` (CUDA activity), sums
the device time of every kernel per *kind* and sets it beside the work the L4 cost model
(:mod:`pccc.ir.schedule_cost`) predicts for that kind. The kinds (:data:`KINDS`):

- ``sum_forward``: the sum parts' forward (``sum_fwd``);
- ``product_forward``: none of its own while the product layers are fused into the sum
  kernels that read them (no launch kind or kernel maps to it; the table says so);
- ``element_flows``: flow ratios (``flow_ratio``) and sibling groups' element flows
  (``sum_eflow``); lone blocks' element flows are part of their ``sum_bwd``;
- ``parameter_flows``: the sum backward (``sum_bwd``: weight gradients / EM flows) and the
  gradient finish (``flows_finish``, ``logits_grad``);
- ``input_forward`` and ``input_backward`` (statistics: ``input_bwd``, ``input_cat_dot``,
  ``logistic_grad``);
- ``em``: the EM update (``em_weights``, ``segment_reduce``, ``weights_from_logits``, the
  families' own update kernels such as ``cat_em``); predicted work: ``em_update_cost``;
- ``other``: flow-row zeroing (``zero_rows``), root flows and every kernel that is not in
  the plan's kernel table (torch's fills, copies and elementwise ops).

**Names.** The kind of a profiled kernel comes from the plan's kernel table
(:func:`pccc.backends.triton.codegen.kernel_specs`, the table the backend generates): each
entry binds a name (``sum_fwd_b32_c64_f2_n4``) to a kernel function of the backend, and
:data:`KERNEL_KIND` gives each function's kind. Triton names a compiled kernel after its
function, so the profile shows the functions' names (``sum_fwd``); the entries' own names are
matched too. The kind of a schedule launch (for the predicted work) is :data:`LAUNCH_KIND` of
its launch kind.

**Columns** (per batch of 512): launches in the schedule and in the profile; device time
(ms, summed over streams); predicted GFLOP and GB; achieved TFLOP/s and GB/s (predicted work
over measured time); those as shares of the card's limits.

**Limits** (:class:`Limits`, each overridable by a flag): NVIDIA H100 SXM5 (the card the
benchmarks run on, "NVIDIA H100 80GB HBM3"), dense, from NVIDIA's H100 Tensor Core GPU
datasheet and Hopper architecture whitepaper: TF32 tensor core 494.7 TFLOP/s (the
datasheet's 989 TFLOP/s is with 2:4 sparsity), FP32 without tensor cores 66.9 TFLOP/s, HBM3
3.35 TB/s; on an H200 (the same GH100 die and clocks) its HBM3e's 4.8 TB/s. Every kind's
rate is shown against all three: the sum and one-hot GEMM kernels run their dots on tensor
cores, the rest on the FP32 units, and the cost model counts both kinds
of FLOP together.

**CPU mode** (``--quick``): tiny HCLT and PD circuits compiled to their plans and L4 schedules
on the CPU (no GPU, no kernel run), joined with a profile read from ``--profile FILE`` (the
``kernel_kinds_profile_<workload>.json`` a GPU run writes, or any ``{"batches": n,
"kernels": [[name, us], [name, us, count], ...]}``) or generated from the cost model: the
kind map, the join, the units and the tables run without a device.

Run on a GPU (repository root)::

    source benchmarks/device_env.sh
    python benchmarks/kernel_kinds.py --which hclt256,pd256 --out $OUT [--compare-to old.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pccc.backends.triton.codegen import kernel_specs  # noqa: E402
from pccc.ir.errors import PcccError  # noqa: E402
from pccc.ir.plan import KernelPlan  # noqa: E402
from pccc.ir.schedule import KernelSchedule  # noqa: E402
from pccc.ir.schedule_cost import BATCH, Cost, em_update_cost, launch_cost  # noqa: E402

#: the kinds, in table order, and their labels
KINDS: dict[str, str] = {
    "sum_forward": "forward sum",
    "product_forward": "forward product",
    "element_flows": "element flows",
    "parameter_flows": "parameter flows (sum backward)",
    "input_forward": "input layers forward",
    "input_backward": "input layers backward",
    "em": "EM update",
    "other": "other (zeroing, copies, torch)",
}

#: the kind of each L4 launch kind (:data:`pccc.ir.schedule.FORWARD_KINDS` and
#: ``BACKWARD_KINDS``)
LAUNCH_KIND: dict[str, str] = {
    "input_fwd": "input_forward", "sum_fwd": "sum_forward", "flow_zero": "other",
    "root_flows": "other", "flow_ratio": "element_flows", "sum_eflow": "element_flows",
    "sum_bwd": "parameter_flows", "input_bwd": "input_backward",
    "input_cat_dot": "input_backward",
}

#: the kind of each kernel function of the backend, by ``(module, function)`` as in
#: :class:`pccc.backends.triton.codegen.KernelRef`
KERNEL_KIND: dict[tuple[str, str], str] = {
    ("kernels_sum", "sum_fwd"): "sum_forward",
    ("kernels_sum", "sum_eflow"): "element_flows",
    ("kernels_sum", "flow_ratio"): "element_flows",
    ("kernels_sum", "sum_bwd"): "parameter_flows",
    ("kernels_param", "flows_finish"): "parameter_flows",
    ("kernels_param", "logits_grad"): "parameter_flows",
    ("kernels_input", "input_fwd"): "input_forward",
    ("kernels_input", "input_bwd"): "input_backward",
    ("kernels_input", "input_cat_dot"): "input_backward",
    ("families.discrete_logistic", "logistic_grad"): "input_backward",
    ("kernels_param", "em_weights"): "em",
    ("kernels_param", "segment_reduce"): "em",
    ("kernels_param", "weights_from_logits"): "em",
    ("families.categorical", "cat_em"): "em",
    ("kernels_param", "zero_rows"): "other",
}


def product_fused() -> bool:
    """Whether the product layers run inside the sum kernels: no launch kind and no kernel
    function has the ``product_forward`` kind."""
    return "product_forward" not in set(LAUNCH_KIND.values()) | set(KERNEL_KIND.values())


def kernel_kind_map(plan: KernelPlan, schedule: KernelSchedule, precision: str
                    ) -> dict[str, str]:
    """The kind of every kernel name of the plan's kernel table: each entry's name and its
    function's name (the name Triton gives the compiled kernel).

    Raises:
        PcccError: a kernel function :data:`KERNEL_KIND` has no kind for, or one function name
            of two kinds.
    """
    out: dict[str, str] = {}
    for spec in kernel_specs(plan, precision, schedule.parts):
        ref = (spec.kernel.module, spec.kernel.name)
        if ref not in KERNEL_KIND:
            raise PcccError(f"kernel_kinds: no kind for kernel {spec.kernel} (table entry "
                            f"{spec.name!r}); add it to KERNEL_KIND")
        kind = KERNEL_KIND[ref]
        for name in (spec.name, spec.kernel.name):
            if out.setdefault(name, kind) != kind:
                raise PcccError(f"kernel_kinds: kernel name {name!r} has two kinds, "
                                f"{out[name]} and {kind}")
    return out


def predicted(schedule: KernelSchedule, batch: int = BATCH) -> dict[str, tuple[int, Cost]]:
    """Per kind, (schedule launches, predicted cost) of one EM training batch: every forward
    and backward launch by :data:`LAUNCH_KIND`, the EM update as ``em``."""
    out = {k: (0, Cost()) for k in KINDS}
    for ln in schedule.forward + schedule.backward:
        if ln.kind not in LAUNCH_KIND:
            raise PcccError(f"kernel_kinds: no kind for launch {ln.title()}")
        n, c = out[LAUNCH_KIND[ln.kind]]
        out[LAUNCH_KIND[ln.kind]] = (n + 1, c + launch_cost(schedule, ln, batch))
    n, c = out["em"]
    out["em"] = (n, c + em_update_cost(schedule))
    return out


@dataclass(frozen=True)
class KernelTime:
    """Device time of ``count`` launches of one kernel name, summed."""

    name: str
    us: float
    count: int = 1


@dataclass
class Measured:
    """One kind's profiled kernels per batch."""

    ms: float = 0.0
    launches: float = 0.0
    kernels: dict[str, float] = field(default_factory=dict)
    """ms per batch of each kernel name"""


def join(profile: Iterable[KernelTime], names: dict[str, str], batches: int
         ) -> dict[str, Measured]:
    """Per kind, the profile's time (ms) and launches per batch over ``batches`` batches; a
    name not in ``names`` is ``other``."""
    if batches < 1:
        raise PcccError(f"kernel_kinds: a profile of {batches} batches")
    out = {k: Measured() for k in KINDS}
    for kt in profile:
        m = out[names.get(kt.name, "other")]
        ms = kt.us / 1000 / batches
        m.ms += ms
        m.launches += kt.count / batches
        m.kernels[kt.name] = m.kernels.get(kt.name, 0.0) + ms
    return out


@dataclass(frozen=True)
class Limits:
    """A card's limits (defaults: the H100 SXM5's, see the module docstring)."""

    tf32_tflops: float = 494.7
    fp32_tflops: float = 66.9
    hbm_tbps: float = 3.35

    def for_card(self, card: str, hbm_given: bool) -> Limits:
        """These limits on ``card``: an H200 (the H100 SXM5's GH100 at the same clocks, with
        HBM3e) moves 4.8 TB/s; a ``--hbm-tbps`` given on the command line stands."""
        if "H200" in card and not hbm_given:
            return Limits(self.tf32_tflops, self.fp32_tflops, 4.8)
        return self


def _rate(amount: float, ms: float, unit: float) -> float | None:
    """``amount`` per second in ``unit`` s (None without time)."""
    return amount / (ms / 1000) / unit if ms > 0 else None


def _share(rate: float | None, limit: float) -> float | None:
    return None if rate is None else rate / limit


def kind_rows(workload: str, pred: dict[str, tuple[int, Cost]], meas: dict[str, Measured],
              limits: Limits, **extra: Any) -> list[dict[str, Any]]:
    """One JSON row per kind and a ``total`` row: launches, ms, GFLOP, GB, TFLOP/s, GB/s and
    the shares of ``limits`` (``extra``: fields every row carries)."""
    rows = []
    for k in [*KINDS, "total"]:
        launches: int | None
        if k == "total":
            launches = sum(n for n, _ in pred.values())
            cost = Cost(sum(c.flops for _, c in pred.values()),
                        sum(c.bytes for _, c in pred.values()))
            m = Measured(sum(v.ms for v in meas.values()), sum(v.launches for v in meas.values()))
        else:
            launches, cost = pred[k]
            m = meas[k]
            if k == "em":  # the EM update is no launch of the schedule
                launches = None
        tflops, gbps = _rate(cost.flops, m.ms, 1e12), _rate(cost.bytes, m.ms, 1e9)
        rows.append(dict(
            kind="kernel_kind", workload=workload, kernel_kind=k,
            label=KINDS.get(k, "total"), fused=k == "product_forward" and product_fused(),
            launches_schedule=launches, launches=round(m.launches, 2), ms=m.ms,
            gflop=cost.flops / 1e9, gb=cost.bytes / 1e9, tflops=tflops, gbps=gbps,
            frac_tf32=_share(tflops, limits.tf32_tflops),
            frac_fp32=_share(tflops, limits.fp32_tflops),
            frac_hbm=_share(gbps, limits.hbm_tbps * 1000),
            kernels={n: round(v, 4) for n, v in sorted(m.kernels.items(),
                                                         key=lambda kv: -kv[1])}, **extra))
    return rows


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def markdown(rows: list[dict[str, Any]], before: dict[tuple[str, str], dict[str, Any]] | None
             = None) -> str:
    """The rows of one workload as a markdown table; ``before``: an earlier run's rows by
    (workload, kind), shown beside."""
    if before is None:
        head = ("| kind | launches sched / run | ms/batch | GFLOP | GB | TFLOP/s | GB/s "
                "| % tf32 | % fp32 | % HBM |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        head = ("| kind | launches sched / run | ms before | ms | speed-up | TFLOP/s before "
                "| TFLOP/s | GB/s before | GB/s | % tf32 | % HBM |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        label = r["label"] + (" (fused into the forward sum)" if r["fused"] else "")
        if r["kernel_kind"] == "total":
            label = "**total**"
        sched = "-" if r["launches_schedule"] is None else r["launches_schedule"]
        common = f"| {label} | {sched} / {r['launches']:g} "
        if before is None:
            lines.append(common + f"| {r['ms']:.3f} | {r['gflop']:.3g} | {r['gb']:.3g} "
                         f"| {_f(r['tflops'], '.1f')} | {_f(r['gbps'], '.0f')} "
                         f"| {_pct(r['frac_tf32'])} | {_pct(r['frac_fp32'])} "
                         f"| {_pct(r['frac_hbm'])} |")
            continue
        b = before.get((r["workload"], r["kernel_kind"]), {})
        bms = b.get("ms")
        speed = bms / r["ms"] if bms and r["ms"] > 0 else None
        lines.append(common + f"| {_f(bms, '.3f')} | {r['ms']:.3f} | {_f(speed, '.2f')} "
                     f"| {_f(b.get('tflops'), '.1f')} | {_f(r['tflops'], '.1f')} "
                     f"| {_f(b.get('gbps'), '.0f')} | {_f(r['gbps'], '.0f')} "
                     f"| {_pct(r['frac_tf32'])} | {_pct(r['frac_hbm'])} |")
    return "\n".join(lines)


def read_before(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    """An earlier run's ``kernel_kinds.jsonl`` rows by (workload, kind)."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                if r.get("kind") == "kernel_kind":
                    out[(r["workload"], r["kernel_kind"])] = r
    return out


def read_profile(path: str) -> tuple[list[KernelTime], int]:
    """A profile file: ``{"batches": n, "kernels": [[name, us(, count)], ...]}`` or a bare
    list of such pairs (one batch). Raises PcccError on another shape."""
    with open(path) as f:
        data = json.load(f)
    items, batches = (data, 1) if isinstance(data, list) else \
        (data.get("kernels"), data.get("batches", 1))
    if not isinstance(items, list) or not all(
            isinstance(e, list) and len(e) in (2, 3) and isinstance(e[0], str) for e in items):
        raise PcccError(f"{path}: not a profile ({{'batches': n, 'kernels': [[name, us], ...]}})")
    return [KernelTime(e[0], float(e[1]), int(e[2]) if len(e) == 3 else 1) for e in items], \
        int(batches)


def write_profile(path: str, profile: list[KernelTime], batches: int) -> None:
    with open(path, "w") as f:
        json.dump({"batches": batches, "kernels": [[k.name, k.us, k.count] for k in profile]},
                  f, indent=0)


#: the name of a torch fill kernel, as the profiler shows it (synthetic profiles)
TORCH_FILL = "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>"


def synthetic_profile(plan: KernelPlan, schedule: KernelSchedule, precision: str,
                      batches: int = 3, limits: Limits = Limits()) -> list[KernelTime]:
    """A profile as the GPU run would record it, with made-up times: per batch, every
    schedule launch under its kernel's function name (a torch fill for the launches without a
    kernel) and the EM step's kernels, each taking 4 times its cost model roofline plus 3 us."""
    specs = {s.name: s.kernel.name for s in kernel_specs(plan, precision, schedule.parts)}

    def us(c: Cost) -> float:
        return 3.0 + 4e6 * max(c.flops / (limits.tf32_tflops * 1e12),
                               c.bytes / (limits.hbm_tbps * 1e12))

    one = [KernelTime(specs.get(ln.kernel, TORCH_FILL), us(launch_cost(schedule, ln)))
           for ln in schedule.forward + schedule.backward]
    one += [KernelTime("em_weights", us(em_update_cost(schedule))),
            KernelTime("segment_reduce", 3.0)]
    if "cat_em" in specs:
        one.append(KernelTime("cat_em", 5.0))
    return [k for _ in range(batches) for k in one]


def quick_schedule(name: str, precision: str, programs: int
                   ) -> tuple[KernelPlan, KernelSchedule]:
    """A tiny ``hclt*`` (16 random variables, 16 latents) or ``pd*`` (4x4, 16 latents)
    circuit's plan and the schedule the backend would run for ``programs`` programs."""
    from pccc.backends.triton.options import TritonOptions
    from pccc.passes import compile_plan
    from pccc.passes.schedule_kernels import schedule_for
    from pccc.structures import HCLT, PD

    if name.startswith("hclt"):
        x = np.random.default_rng(0).integers(0, 16, size=(200, 16))
        c = HCLT(x, 16, num_cats=16)
    elif name.startswith("pd"):
        c = PD((4, 4), 16, split_intervals=(2, 2), num_cats=16)
    else:
        raise PcccError(f"kernel_kinds: unknown workload {name!r} (hclt..., pd...)")
    plan = compile_plan(c)
    return plan, schedule_for(plan, TritonOptions(precision=precision), programs)


def profiled_kernels(prof: Any) -> list[KernelTime]:
    """The CUDA kernels of a ``torch.profiler.profile``: (name, device us, launches)."""
    out = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", 0.0) or getattr(ev, "cuda_time_total", 0.0)
        if t > 0 and str(getattr(ev, "device_type", "")) == "DeviceType.CUDA":
            out.append(KernelTime(ev.key, float(t), int(ev.count)))
    return out


def measure(name: str, data: tuple[Any, Any], precision: str, warm: int, steps: int,
            options: dict[str, Any]) -> tuple[KernelPlan, KernelSchedule, list[KernelTime], str]:
    """Build and compile a workload on the GPU, train ``warm`` batches, profile ``steps`` more:
    (plan, schedule, kernels, card)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import pccc
    from benchmarks import gpu_bench
    from pccc.optim import MiniBatchEM

    x, xg = data
    c = gpu_bench.build(name, x, xg)
    model = pccc.compile(c, backend="triton", device="cuda", precision=precision, **options)
    model.param_grads = False  # EM reads flows (as gpu_bench trains)
    opt = MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    gpu_bench.epoch(model, opt, xg, warm)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        gpu_bench.epoch(model, opt, xg, steps)
        torch.cuda.synchronize()
    schedule = model.executor.dp.schedule  # type: ignore[attr-defined]
    return model.plan, schedule, profiled_kernels(prof), torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--which", default="hclt256,pd256")
    ap.add_argument("--mnist", default=".bench/mnist.npz")
    ap.add_argument("--precision", default="tf32")
    ap.add_argument("--warm", type=int, default=5, help="batches trained before profiling")
    ap.add_argument("--steps", type=int, default=10, help="batches profiled")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a Triton backend option, as gpu_bench.py's")
    ap.add_argument("--tf32-tflops", type=float, default=Limits.tf32_tflops)
    ap.add_argument("--fp32-tflops", type=float, default=Limits.fp32_tflops)
    ap.add_argument("--hbm-tbps", type=float, default=None,
                    help=f"default {Limits.hbm_tbps} (H100 SXM5), 4.8 on an H200")
    ap.add_argument("--compare-to", default=None, metavar="FILE.jsonl",
                    help="an earlier run's kernel_kinds.jsonl: before/after columns")
    ap.add_argument("--quick", action="store_true",
                    help="CPU: tiny circuits and a synthetic (or --profile) profile")
    ap.add_argument("--profile", default=None, help="--quick: the profile file to join")
    ap.add_argument("--programs", type=int, default=528,
                    help="--quick: programs a launch aims for (H100: 132 SMs x 4)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args(argv)
    given = Limits(a.tf32_tflops, a.fp32_tflops, a.hbm_tbps or Limits.hbm_tbps)
    before = read_before(a.compare_to) if a.compare_to else None
    which = [w for w in a.which.split(",") if w]
    data: tuple[Any, Any] | None = None
    if not a.quick:
        import torch

        from benchmarks.bench_options import parse_options

        d = np.load(a.mnist)
        x = d["x_train"].reshape(len(d["x_train"]), -1).astype(np.int64)
        data = (x, torch.as_tensor(x, device="cuda"))
    os.makedirs(a.out, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in which:
        if a.quick:
            plan, schedule = quick_schedule(name, a.precision, a.programs)
            batches = a.steps
            if a.profile:
                profile, batches = read_profile(a.profile)
            else:
                profile = synthetic_profile(plan, schedule, a.precision, batches, given)
            card = "synthetic"
        else:
            assert data is not None
            plan, schedule, profile, card = measure(name, data, a.precision, a.warm, a.steps,
                                                    parse_options(a.option))
            batches = a.steps
        if not a.profile:
            write_profile(os.path.join(a.out, f"kernel_kinds_profile_{name}.json"), profile,
                          batches)
        meas = join(profile, kernel_kind_map(plan, schedule, a.precision), batches)
        total = sum(m.ms for m in meas.values())
        if total > 0 and meas["other"].ms > total / 2:  # names the table does not know?
            print(f"{name}: 'other' holds {meas['other'].ms:.3f} of {total:.3f} ms per batch: "
                  + ", ".join(list(meas["other"].kernels)[:5]), file=sys.stderr)
        limits = given.for_card(card, a.hbm_tbps is not None)
        got = kind_rows(name, predicted(schedule), meas, limits, card=card,
                        precision=a.precision, batch=BATCH, batches=batches)
        for r in got:
            print(json.dumps(r), flush=True)
        print(f"\n### {name} ({card}, {a.precision}, batch {BATCH}, {batches} batches)\n")
        print(markdown(got, before), flush=True)
        rows += got
    with open(os.path.join(a.out, "kernel_kinds.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
