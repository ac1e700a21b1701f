"""Code generation: a plan's kernel specs, and the kernel table module made from them.

The kernels themselves are ordinary ``@triton.jit`` functions (:mod:`.kernels_sum`,
:mod:`.kernels_input`, :mod:`.kernels_param`) specialized by ``tl.constexpr`` parameters. What
a plan needs of them is a list of :class:`KernelSpec` values (:func:`kernel_specs`): one sum
kernel triple (forward, backward, element flows) per distinct partition shape
(:class:`SumShape`: rows, chunk size, fan-in, chunks) and precision, one input kernel pair per
distribution, and the fixed kernels. :func:`render` emits them as a small Python module that
binds each name the runtime launches (``sum_fwd_b32_c64_f2_n4``, ``input_fwd_categorical``,
``em_weights``, ...) to its kernel and constexpr values (:func:`.specialized.specialize`);
:func:`load_module` writes it to ``$PCCC_CACHE_DIR/triton/<hash>/kernels.py`` (default cache
dir ``~/.cache/pccc``; ``<hash>`` is the source's own) and imports it. Only Triton's public API
is used.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from pccc.backends.triton.families import family
from pccc.ir import dists as registry
from pccc.ir.errors import PcccError
from pccc.ir.plan import KernelPlan, SumLayer
from pccc.ir.schedule import shape_tag, sum_kernel

PRECISIONS = ("tf32", "fp32", "bf16")


def transposed(shape: SumShape) -> bool:
    """Whether the shape's kernels accumulate transposed: the forward ``[BT, B]``, the
    backward's weight gradients ``[C, B]``. Tensor-core blocks of fewer than 64 rows do, so
    that the dot's M is 64 (a 64-column batch tile, or the chunk's C elements) and Hopper's
    warp-group MMA applies instead of the older MMA through shared memory; blocks of 64 rows
    already have M = 64."""
    return shape.uses_dot and shape.B < 64


def pow2ceil(x: int) -> int:
    """The least power of two at least ``x`` (1 for ``x <= 1``)."""
    return 1 << max(0, int(x - 1).bit_length())


@dataclass(frozen=True, order=True)
class SumShape:
    """What a sum kernel is specialized on."""

    B: int
    C: int
    fanin: int
    """children read per element (the most any element of the blocks has)"""
    NC: int
    """chunks per block, padding included (the loop bound)"""

    @property
    def tag(self) -> str:
        return shape_tag(self.B, self.C, self.fanin, self.NC)

    @property
    def uses_dot(self) -> bool:
        return self.B >= 16 and self.C >= 16


def sum_shapes(plan: KernelPlan) -> list[SumShape]:
    """The distinct kernel shapes of the plan's sum parts, as the ``schedule-kernels`` pass
    groups a partition's blocks (:func:`pccc.passes.schedule_parts.split_by_fanin`: fan-in up
    to ``NARROW`` in one kernel, each wider fan-in its own)."""
    from pccc.passes.schedule_parts import child_counts, layer_tables, split_by_fanin

    sums = [ly for ly in plan.layers if isinstance(ly, SumLayer)]
    out = set()
    for ly, table in zip(sums, layer_tables(plan)):
        count = child_counts(table)
        for p in ly.partitions:
            for fanin, _ in split_by_fanin(p, count):
                out.add(SumShape(p.block_size, p.chunk_size, fanin, p.max_chunks))
    return sorted(out)


def input_dists(plan: KernelPlan) -> list[tuple[str, int]]:
    """(distribution, binomial total or 0) of each input kernel the plan needs."""
    out = set()
    for ly in plan.input_layers:
        out.add((ly.dist, int(dict(ly.attrs).get("total", 0)) if ly.dist == "binomial" else 0))
    return sorted(out)


def input_kernel_name(dist: str, total: int, direction: str) -> str:
    return f"input_{direction}_{dist}" + (f"_t{total}" if dist == "binomial" else "")


@dataclass(frozen=True, order=True)
class KernelRef:
    """A function of one of the backend's kernel modules (``kernels_sum.sum_fwd``)."""

    module: str
    """the module's name in ``pccc.backends.triton``"""
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


#: the value of a constexpr parameter: a Python constant or a kernel-module function
Constexpr = int | float | bool | str | KernelRef


@dataclass(frozen=True)
class KernelSpec:
    """One kernel a plan launches: the name the runtime launches it by, the kernel function
    and the values of the constexpr parameters it is specialized with (the launch adds the
    rest: tile sizes, write modes, warps)."""

    name: str
    kernel: KernelRef
    constexprs: tuple[tuple[str, Constexpr], ...] = ()


SUM_FWD = KernelRef("kernels_sum", "sum_fwd")
SUM_BWD = KernelRef("kernels_sum", "sum_bwd")
SUM_EFLOW = KernelRef("kernels_sum", "sum_eflow")
INPUT_FWD = KernelRef("kernels_input", "input_fwd")
INPUT_BWD = KernelRef("kernels_input", "input_bwd")
#: each distribution's log-probability function (in its module of ``families``), the
#: ``LOGPROB`` of its ``input_fwd``
LOGPROBS = {dist: KernelRef(family(dist).module(), family(dist).logprob)
            for dist in registry.implemented("triton")}
#: distributions whose statistics kernel counts values (``input_bwd``'s ``CAT``) instead of
#: summing moments
COUNTED = tuple(dist for dist in LOGPROBS if family(dist).counted)
#: the kernels every plan's table holds as they are (no constexpr bound)
FIXED = (KernelRef("kernels_sum", "flow_ratio"), KernelRef("kernels_param", "zero_rows"),
         KernelRef("kernels_param", "segment_reduce"),
         KernelRef("kernels_param", "weights_from_logits"),
         KernelRef("kernels_param", "flows_finish"), KernelRef("kernels_param", "logits_grad"),
         KernelRef("kernels_param", "em_weights"))


def mix(shape: SumShape, precision: str) -> str:
    """The ``MIX`` of a shape's kernels: a broadcast product where a tile dimension is under
    16, else a dot in the precision's operands (``"tf32"``, ``"ieee"`` for fp32, ``"bf16"``)."""
    if not shape.uses_dot:
        return "bcast"
    return {"tf32": "tf32", "fp32": "ieee", "bf16": "bf16"}[precision]


def sum_specs(shape: SumShape, precision: str) -> list[KernelSpec]:
    """The forward, backward and element-flow kernels of one partition shape."""
    s = shape
    # the tensor-core path needs dims >= 16; smaller tiles use the broadcast path
    lo = 16 if s.uses_dot else 1
    common: tuple[tuple[str, Constexpr], ...] = (
        ("B", s.B), ("C", s.C), ("F", s.fanin), ("BP", max(lo, pow2ceil(s.B))),
        ("CP", max(lo, pow2ceil(s.C))), ("MIX", mix(s, precision)))
    # (only the forward's chunk loop has NC as a compile-time bound: see sum_kernel)
    fwd = common[:3] + (("NC", s.NC),) + common[3:] + (("TRANS", transposed(s)),)
    name = partial(sum_kernel, B=s.B, C=s.C, fanin=s.fanin, NC=s.NC)
    return [KernelSpec(name("sum_fwd"), SUM_FWD, fwd),
            KernelSpec(name("sum_bwd"), SUM_BWD, common + (("TRANS", transposed(s)),)),
            KernelSpec(name("sum_eflow"), SUM_EFLOW, common)]


def input_specs(dist: str, total: int) -> list[KernelSpec]:
    """The forward and statistics kernels of one distribution (``total``: binomial trials)."""
    if dist not in LOGPROBS:
        raise PcccError(f"triton backend: no kernel for input distribution {dist!r} "
                        f"(it has {', '.join(LOGPROBS)})")
    fwd: tuple[tuple[str, Constexpr], ...] = (("LOGPROB", LOGPROBS[dist]),)
    if dist == "binomial":
        fwd += (("TOTAL", float(total)),)
    return [KernelSpec(input_kernel_name(dist, total, "fwd"), INPUT_FWD, fwd),
            KernelSpec(input_kernel_name(dist, total, "bwd"), INPUT_BWD,
                       (("CAT", dist in COUNTED),))]


def kernel_specs(plan: KernelPlan, precision: str, shapes: Iterable[Any] | None = None
                 ) -> list[KernelSpec]:
    """Every kernel the plan's passes launch, in a stable order. ``shapes``: the sum parts'
    kernel shapes, anything with ``B``, ``C``, ``fanin`` and ``NC`` (the L4 schedule's
    parts; default: :func:`sum_shapes`)."""
    if precision not in PRECISIONS:
        raise PcccError(f"triton backend: precision must be one of {', '.join(PRECISIONS)}, "
                        f"not {precision!r}")
    out = [KernelSpec(ref.name, ref) for ref in FIXED]
    given = sum_shapes(plan) if shapes is None else shapes
    named: set[str] = set()
    for shape in sorted({SumShape(s.B, s.C, s.fanin, s.NC) for s in given}):
        # (shapes that differ only in NC share their backward kernels)
        new = [k for k in sum_specs(shape, precision) if k.name not in named]
        named.update(k.name for k in new)
        out += new
    dists = input_dists(plan)
    for dist, total in dists:
        out += input_specs(dist, total)
    for dist in sorted({d for d, _ in dists}):  # the families' own kernels
        fam = family(dist)
        out += [KernelSpec(k, KernelRef(fam.module(), k)) for k in fam.kernels]
    if any(d == "categorical" for d, _ in dists):
        # the one-hot GEMM statistics (runtime.py picks the layers they fit): the one-hot is
        # exact, the flows are rounded to tf32 unless the precision is fp32
        ip = "ieee" if precision == "fp32" else "tf32"
        out.append(KernelSpec("input_cat_dot", KernelRef("kernels_input", "input_cat_dot"),
                              (("IP", ip),)))
    return out


#: generated lines are at most this long (ruff's limit)
LINE = 100


def _ref(ref: KernelRef) -> ast.expr:  # (a family module is imported by its last name)
    return ast.Attribute(ast.Name(ref.module.rsplit(".", 1)[-1], ast.Load()), ref.name,
                         ast.Load())


def _value(v: Constexpr) -> ast.expr:
    return _ref(v) if isinstance(v, KernelRef) else ast.Constant(v)


def _binding(spec: KernelSpec) -> str:
    """``name = module.kernel`` or ``name = specialize(module.kernel, "name", K=v, ...)``,
    laid out within :data:`LINE` columns."""
    if not spec.constexprs:
        return ast.unparse(ast.Assign([ast.Name(spec.name, ast.Store())], _ref(spec.kernel),
                                      lineno=0))
    args = [ast.unparse(_ref(spec.kernel)), ast.unparse(ast.Constant(spec.name))]
    args += [ast.unparse(ast.keyword(k, _value(v))) for k, v in spec.constexprs]
    one = f"{spec.name} = specialize({', '.join(args)})"
    if len(one) <= LINE:
        return one
    lines = [f"{spec.name} = specialize("]
    line = "   "
    for a in args:  # packed, each line within LINE columns
        if len(line) + len(a) + 2 > LINE:
            lines.append(line)
            line = "   "
        line += f" {a},"
    return "\n".join([*lines, line, ")"])


def render(specs: list[KernelSpec], precision: str) -> str:
    """The kernel table module of ``specs``: imports, then one binding per spec."""
    modules = {s.kernel.module for s in specs} | {
        v.module for s in specs for _, v in s.constexprs if isinstance(v, KernelRef)}
    packages: dict[str, list[str]] = {}
    for m in sorted(modules):  # kernels_input, families.gaussian, ...
        pkg, _, name = f"pccc.backends.triton.{m}".rpartition(".")
        packages.setdefault(pkg, []).append(name)
    imports = [ast.ImportFrom(pkg, [ast.alias(n) for n in names], 0)
               for pkg, names in sorted(packages.items())]
    if any(s.constexprs for s in specs):
        imports.append(ast.ImportFrom("pccc.backends.triton.specialized",
                                      [ast.alias("specialize")], 0))
    head = (f'"""Kernel table of a plan (precision {precision}), generated by '
            'pccc.backends.triton.codegen.\n\nDo not edit: each name is a kernel of '
            'pccc.backends.triton and its constexpr values.\n"""')
    lines = [head, "", *(ast.unparse(i) for i in imports), ""]
    lines += [_binding(s) for s in specs]
    return "\n".join(lines) + "\n"


def cache_dir() -> Path:
    base = os.environ.get("PCCC_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "pccc"
    return root / "triton"


def load_module(plan: KernelPlan, precision: str, shapes: Iterable[Any] | None = None
                ) -> tuple[ModuleType, str, Path]:
    """Make (or reuse) and import the plan's kernel table: (module, source, path).
    ``shapes``: as :func:`kernel_specs`'s (passing the schedule's parts saves recomputing
    them). The module's ``MADE_FRESH`` says whether this process wrote the table file (no
    earlier process made the same table: its kernels are not in Triton's cache either)."""
    src = render(kernel_specs(plan, precision, shapes), precision)
    key = hashlib.sha256(src.encode()).hexdigest()[:20]
    path = cache_dir() / key / "kernels.py"
    fresh = not path.exists() or path.read_text() != src
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        os.replace(tmp, path)  # atomic: concurrent compiles never see a half-written file
    name = f"pccc_triton_{key}"
    if name in sys.modules:
        return sys.modules[name], src, path
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    mod.MADE_FRESH = fresh  # type: ignore[attr-defined]  # (no earlier process made it)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod, src, path
