"""Code generation: one Triton module per plan, written to a cache directory and imported.

Triton reads a kernel's source from its file, so generated kernels must live in a real module.
The file is ``$PCCC_CACHE_DIR/triton/<hash>/kernels.py`` (default cache dir ``~/.cache/pccc``),
where ``<hash>`` covers the plan's structure (not its parameter values), the precision and the
template version; an existing file is reused. Only Triton's public API is used
(``triton.jit``, ``kernel[grid](...)``); the launchable kernels are wrapped by ``triton.jit``
at their first use (:mod:`.lazyjit`), the helpers they call at import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import ModuleType

import numpy as np

from pccc.backends.triton import templates as T
from pccc.ir.plan import KernelPlan, ProductLayer, SumLayer, SumPartition

TEMPLATE_VERSION = "30"
PRECISIONS = ("tf32", "fp32", "bf16")
#: log of the largest factor the backward pass lets exp() produce before a mix
EXP_CAP = 80.0


#: the fan-in up to which a partition's blocks share one kernel (unrolled children loads;
#: padding children are skipped, not loaded): ``PCCC_TRITON_FANIN_SPLIT=1`` gives every
#: fan-in its own kernel and launch, as before
NARROW = 8
FANIN_SPLIT = os.environ.get("PCCC_TRITON_FANIN_SPLIT", "") == "1"
#: the backward's children rows loaded once per program, before its batch loop, instead of
#: once per batch tile (``PCCC_TRITON_HOIST=0``: per tile, as before)
HOIST = os.environ.get("PCCC_TRITON_HOIST", "1") != "0"
#: tensor-core blocks of fewer than 64 rows (PD-256's 32) accumulate transposed: the
#: backward's weight gradients ``[C, B]``, the forward ``[BT, B]``, so that the dot's M is 64
#: (C, or a 64-column batch tile) and Hopper's warp-group MMA applies instead of the older MMA
#: through shared memory (``PCCC_TRITON_GT=0`` / ``PCCC_TRITON_FT=0``: as before). Blocks of
#: 64 rows already have M = 64 (HCLT-256 was 3% slower with its gradients transposed).
GT = os.environ.get("PCCC_TRITON_GT", "1") != "0"
FT = os.environ.get("PCCC_TRITON_FT", "1") != "0"


def fwd_transposed(shape: SumShape) -> bool:
    """Whether the shape's forward accumulates ``[BT, B]`` (see ``FT``)."""
    return FT and shape.uses_dot and shape.B < 64


def grad_transposed(shape: SumShape) -> bool:
    """Whether the shape's backward accumulates its weight gradients ``[C, B]`` (``GT``)."""
    return GT and shape.uses_dot and shape.B < 64


def _children_code(s: SumShape) -> dict[str, str]:
    """The backward's element reads and flow scatter: for narrow products, each child's row
    offsets loaded once before the batch loop (they do not change with the columns) and
    unrolled per child; wide products (a loop over groups of children) and ``HOIST`` off
    read the children table in every batch tile (``_elements``, ``_scatter``)."""
    i8, i12, i16 = " " * 8, " " * 12, " " * 16
    if s.wide or not HOIST:
        return dict(kids="", elem=f"{i12}elem = _elements(node, children, e, ccmask, cols, "
                    f"cmask, stride, {s.fanin}, row)\n",
                    scatter=f"{i16}_scatter(flow, children, e, ccmask, cols, cmask, stride, "
                    f"val, {s.fanin}, row, unaligned, ATOMIC)\n")
    kids = elem = scatter = ""
    for j in range(s.fanin):
        kids += (f"{i8}k{j} = tl.load(children + e.to(tl.int64) * row + {j}, mask=ccmask, "
                 f"other=0)\n{i8}o{j} = k{j}.to(tl.int64) * stride  # padding children: "
                 f"slot 0, not read\n")
        elem += (f"{i12}elem {'+' if j else ''}= tl.load(node + o{j}[:, None] + cols[None, :], "
                 f"mask=(k{j} != 0)[:, None] & cmask[None, :], other=0.0)\n")
        scatter += (f"{i16}_put(flow, o{j}[:, None] + cols[None, :], val, (k{j} != 0)[:, None] "
                    f"& cmask[None, :], unaligned, ATOMIC)\n")
    elem += f"{i12}elem = tl.where(ccmask[:, None], elem, float(\"-inf\"))\n"
    return dict(kids=kids, elem=elem, scatter=scatter)


def pow2ceil(x: int) -> int:
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
        return f"b{self.B}_c{self.C}_f{self.fanin}_n{self.NC}"

    @property
    def uses_dot(self) -> bool:
        return self.B >= 16 and self.C >= 16

    @property
    def wide(self) -> bool:
        """products wider than ``NARROW``: a loop over children, not unrolled code"""
        return self.fanin > NARROW


def layer_fanin(layer: ProductLayer) -> int:
    """Fan-in of the layer's dense children table (at least 1)."""
    return max([1] + [int(p.children.shape[1]) for p in layer.partitions])


def children_table(layer: ProductLayer, neg: int) -> np.ndarray:
    """Dense ``[num_elem_slots, fanin]`` node slots of every element, real children first
    (padding: slot 0, log 1); rows no partition writes are ``[neg, 0, ...]`` (value -inf)."""
    table = np.zeros((layer.num_elem_slots, layer_fanin(layer)), np.int64)
    table[:, 0] = neg
    for p in layer.partitions:
        kids = p.children
        rows = table[p.elem_start: p.elem_start + p.num_elems]
        rows[:, 0] = 0
        rows[:, : kids.shape[1]] = kids
        fix = _padding_first(kids)
        if len(fix):  # real children to the front, in order
            order = np.argsort(kids[fix] == 0, axis=1, kind="stable")
            rows[fix, : kids.shape[1]] = np.take_along_axis(kids[fix], order, axis=1)
    return table


def _padding_first(kids: np.ndarray) -> np.ndarray:
    """The rows of ``kids`` where a padding child (0) comes before a real one (plans put
    padding last, so usually none)."""
    bad = np.zeros(len(kids), bool)
    for f in range(kids.shape[1] - 1):
        bad |= (kids[:, f] == 0) & (kids[:, f + 1] != 0)
    return np.flatnonzero(bad)


def child_counts(table: np.ndarray) -> np.ndarray:
    """How many real children each element of a :func:`children_table` has (at least 1):
    the length of its run of nonzero slots from the front (padding is last), found column by
    column over the rows still running (few rows are wider than two)."""
    count = np.ones(len(table), np.int32)
    if table.shape[1] < 2:
        return count
    second = table[:, 1] != 0
    count += second
    rows = np.flatnonzero(second)
    for f in range(2, table.shape[1]):
        rows = rows[table[rows, f] != 0]
        if not len(rows):
            break
        count[rows] += 1
    return count


def split_by_fanin(part: SumPartition, table: np.ndarray, count: np.ndarray | None = None
                   ) -> list[tuple[SumShape, np.ndarray]]:
    """The partition's blocks grouped by how many children their elements really have, so a
    wide product (one tree node with 100 children) does not widen the whole layer's kernel:
    blocks of fan-in at most ``NARROW`` in one group (a launch each is what the small layers
    of deep trees pay for), each wider fan-in a group of its own. ``count``: the table's
    :func:`child_counts`, where the caller has them."""
    if count is None:
        count = child_counts(table)
    C = part.chunk_size
    nb, nc = part.chunk_start.shape
    idx = np.minimum(part.chunk_start[:, :, None] + np.arange(C), len(count) - 1)
    per_chunk = count[idx.reshape(nb, -1)].reshape(nb, nc, C).max(axis=2, initial=1)
    live = np.arange(nc) < part.num_chunks[:, None]
    per_block = np.where(live, per_chunk, 1).max(axis=1, initial=1)
    if not FANIN_SPLIT:
        per_block = np.where(per_block <= NARROW, per_block[per_block <= NARROW].max(initial=1),
                             per_block)
    out = []
    for f in np.unique(per_block):
        blocks = np.flatnonzero(per_block == f)
        out.append((SumShape(part.block_size, C, int(f), part.max_chunks), blocks))
    return out


#: a sum layer's children table and its blocks by kernel shape (see :func:`fanin_groups`)
FaninGroups = tuple[np.ndarray, list[tuple[SumShape, SumPartition, np.ndarray]]]
#: :func:`fanin_groups` per live plan (made by ``load_module``, read again by ``DevicePlan``),
#: with the settings they were made under
_GROUPS: weakref.WeakKeyDictionary[KernelPlan, tuple[tuple[int, bool], list[FaninGroups]]] = \
    weakref.WeakKeyDictionary()


def fanin_groups(plan: KernelPlan) -> list[FaninGroups]:
    """Per sum layer: the children table of the product layer below it (read-only) and the
    (kernel shape, partition, its blocks) of :func:`split_by_fanin`. Made once per plan:
    kept (while the plan lives) for the :class:`DevicePlan` that follows ``load_module``."""
    key = (NARROW, FANIN_SPLIT)
    hit = _GROUPS.get(plan)
    if hit is not None and hit[0] == key:
        return hit[1]
    out = []
    prod: ProductLayer | None = None
    for ly in plan.layers:
        if isinstance(ly, ProductLayer):
            prod = ly
            continue
        assert isinstance(ly, SumLayer) and prod is not None
        table = children_table(prod, plan.num_node_slots)
        table.flags.writeable = False
        count = child_counts(table)
        out.append((table, [(shape, p, blocks) for p in ly.partitions
                            for shape, blocks in split_by_fanin(p, table, count)]))
    _GROUPS[plan] = (key, out)
    return out


def sum_groups(plan: KernelPlan) -> list[list[tuple[SumShape, SumPartition, np.ndarray]]]:
    """Per sum layer: (kernel shape, partition, its blocks) after :func:`split_by_fanin`."""
    return [groups for _, groups in fanin_groups(plan)]


def sum_shapes(plan: KernelPlan) -> list[SumShape]:
    return sorted({shape for layer in sum_groups(plan) for shape, _, _ in layer})


def input_dists(plan: KernelPlan) -> list[tuple[str, int]]:
    """(distribution, binomial total or 0) of each input kernel the plan needs."""
    out = set()
    for ly in plan.input_layers:
        out.add((ly.dist, int(dict(ly.attrs).get("total", 0)) if ly.dist == "binomial" else 0))
    return sorted(out)


def input_kernel_name(dist: str, total: int, direction: str) -> str:
    return f"input_{direction}_{dist}" + (f"_t{total}" if dist == "binomial" else "")


def _mixes(shape: SumShape, precision: str, BP: int, CP: int) -> dict[str, str]:
    """The dots (or broadcast sums) of a shape's kernels, and the accumulators' layouts:
    transposed where ``fwd_transposed`` / ``grad_transposed``."""
    ft, gt = fwd_transposed(shape), grad_transposed(shape)
    out = dict(gfix="        g = tl.trans(g)\n        g1 = tl.trans(g1)\n" if gt else "",
               gshape=f"[{CP}, {BP}]" if gt else f"[{BP}, {CP}]",
               ashape=f"[BT, {BP}]" if ft else f"[{BP}, BT]",
               ccol="[:, None]" if ft else "[None, :]", crow="[None, :]" if ft else "[:, None]")
    if not shape.uses_dot:
        return dict(out, mix_fwd=T.BCAST_FWD, mix_bwd=T.BCAST_BWD, mix_grad=T.BCAST_GRAD,
                    mix_flow=T.BCAST_FLOW)
    if precision == "bf16":
        return dict(out, mix_fwd=T.BF16_FWD_T if ft else T.BF16_FWD, mix_bwd=T.BF16_BWD,
                    mix_grad=T.BF16_GRAD_T if gt else T.BF16_GRAD,
                    mix_flow=T.BF16_FLOW_T if gt else T.BF16_FLOW)
    ip = "tf32" if precision == "tf32" else "ieee"
    snippets = (("mix_fwd", T.DOT_FWD_T if ft else T.DOT_FWD), ("mix_bwd", T.DOT_BWD),
                ("mix_grad", T.DOT_GRAD_T if gt else T.DOT_GRAD),
                ("mix_flow", T.DOT_FLOW_T if gt else T.DOT_FLOW))
    return dict(out, **{k: Template(v).substitute(ip=ip) for k, v in snippets})


def render(plan: KernelPlan, precision: str, plan_hash: str = "",
           shapes: list[SumShape] | None = None) -> str:
    """The generated module's source text."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    parts = [Template(T.HEADER).substitute(plan_hash=plan_hash, precision=precision,
                                           narrow=NARROW)]
    for s in sum_shapes(plan) if shapes is None else shapes:
        # the tensor-core path needs dims >= 16; smaller tiles use the broadcast path
        BP, CP = (max(16, pow2ceil(s.B)), max(16, pow2ceil(s.C))) if s.uses_dot else \
            (pow2ceil(s.B), pow2ceil(s.C))
        consts = dict(B=s.B, C=s.C, F=s.fanin, NC=s.NC, BP=BP, CP=CP, cap=EXP_CAP,
                      **_mixes(s, precision, BP, CP), **_children_code(s))
        parts.append(T.SUM_FWD.substitute(name=f"sum_fwd_{s.tag}", **consts))
        parts.append(T.SUM_BWD.substitute(name=f"sum_bwd_{s.tag}", **consts))
        parts.append(T.SUM_EFLOW.substitute(name=f"sum_eflow_{s.tag}", **consts))
    dists = input_dists(plan)
    if dists:
        parts.append(T.INPUT_STATS)
    if any(d == "categorical" for d, _ in dists):
        parts.append(T.CAT_EM)
    for dist, total in dists:
        lp = Template(T.LOGPROB[dist]).substitute(total=f"{float(total)!r}")
        parts.append(T.INPUT_FWD.substitute(name=input_kernel_name(dist, total, "fwd"),
                                            dist=dist, logprob=lp, prologue=T.INPUT_PROLOGUE))
        parts.append(T.INPUT_BWD.substitute(name=input_kernel_name(dist, total, "bwd"),
                                            dist=dist, CAT=dist == "categorical",
                                            prologue=T.INPUT_PROLOGUE))
    if any(d == "categorical" for d, _ in dists):
        # the one-hot GEMM statistics (runtime.py picks the layers they fit): the one-hot is
        # exact, the flows are rounded to tf32 unless the precision is fp32
        parts.append(T.INPUT_CAT_DOT.substitute(ip="ieee" if precision == "fp32" else "tf32"))
    parts.append(T.PARAM_KERNELS)
    return "".join(parts)


def plan_hash(plan: KernelPlan, precision: str, shapes: list[SumShape] | None = None) -> str:
    """Hash of what the generated source depends on (structure, not parameter values)."""
    h = hashlib.sha256(f"v{TEMPLATE_VERSION}|{precision}|{HOIST}|{GT}|{FT}|".encode())
    h.update(repr(sum_shapes(plan) if shapes is None else shapes).encode())
    h.update(repr(input_dists(plan)).encode())
    h.update(plan.summary().encode())
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    base = os.environ.get("PCCC_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "pccc"
    return root / "triton"


def load_module(plan: KernelPlan, precision: str) -> tuple[ModuleType, str, Path]:
    """Generate (or reuse) and import the plan's kernel module: (module, source, path)."""
    shapes = sum_shapes(plan)  # once: it walks every partition's blocks
    key = plan_hash(plan, precision, shapes)
    src = render(plan, precision, key, shapes)
    path = cache_dir() / key / "kernels.py"
    if not path.exists() or path.read_text() != src:
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
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod, src, path
