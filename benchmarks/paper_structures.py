"""The PyJuice paper's benchmark structures over ImageNet32-shaped inputs, and their edge counts.

    python benchmarks/paper_structures.py [--which pd-mid,hclt-mid] [--tree-examples N]
                                          [--build] [--pyjuice]

Section 6.3 of the PyJuice paper (Liu, Ahmed, Van den Broeck, ICML 2024) benchmarks PD-mid
(107M edges), PD-large (405M), HCLT-mid (40M) and HCLT-large (174M) on ImageNet32. Here they
are built over 3,072 categorical(256) variables, one 32x32 RGB image in ImageNet32's own
layout (channel-major: variable ``c * 1024 + 32 * row + col``):

- **PD**: ``data_shape (3, 32, 32)``, split intervals ``(3, 4, 4)`` (channels are never split:
  8x8 leaf regions of 3x4x4 variables), ``max_prod_block_conns 8``, 128 (mid) and 256
  (large) latents: the region grid, block connections and latents of the paper authors'
  public benchmark configurations (``pd_128`` / ``pd_256``, which cut ImageNet32 into 3x16x16
  patches with split intervals ``(3, 2, 2)``: the same 8x8 grid of leaf regions, hence the
  same sum edges; the leaves here hold 48 variables instead of 12).
- **HCLT**: the Chow-Liu tree of the first ``--tree-examples`` (default 20,000) synthetic
  images (:func:`synthetic_images`), 144 (mid) and 304 (large) latents: that tree has
  1,876 inner variables of 3,072, so edges are about ``1,875 L^2``.

Edges are counted as ``structure_counts.py`` counts them: sum edges (node x child) plus
product edges (node x factor). PD's count is closed-form over the regions
(:func:`pd_edge_count`), HCLT's a formula of its tree's inner variables
(:func:`hclt_edge_count`; ``--tree`` keeps the tree, which takes minutes on a CPU);
``--build`` also builds pccc's circuits (uniform parameters) and
counts their IR, ``--pyjuice`` builds ``juice.structures.PD`` and PyJuice's HCLT of the same
tree (``BayesianTreeToHiddenRegionGraph``: its mutual information over 3,072 variables is
for a GPU) and counts their node graphs. One JSON line per structure, then a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: ImageNet32's image: channels, rows, columns (variable ids are row-major over this shape)
IMAGE_SHAPE = (3, 32, 32)
#: examples the paper's HCLT trees are learned from (its benchmark configurations' choice)
TREE_EXAMPLES = 20000


@dataclass(frozen=True)
class Structure:
    """One benchmark structure: a PD over ``shape`` or an HCLT over ``prod(shape)`` variables."""

    name: str
    """e.g. ``pd-mid``"""
    kind: str
    """``pd`` or ``hclt``"""
    latents: int
    """sum nodes per region (PD) or hidden states per variable (HCLT)"""
    shape: tuple[int, ...] = IMAGE_SHAPE
    """the data's shape; its product is the number of variables"""
    split_intervals: tuple[int, ...] = (3, 4, 4)
    """PD: distance between split points per axis"""
    max_prod_block_conns: int = 8
    """PD: most products one sum block mixes"""
    paper_edges: int = 0
    """the edge count the paper quotes (0: not one of the paper's)"""

    @property
    def num_vars(self) -> int:
        return math.prod(self.shape)

    def spec(self) -> dict:
        """A JSON-able description (what the PyJuice side script reads)."""
        return asdict(self)

    @staticmethod
    def from_spec(d: dict) -> Structure:
        return Structure(str(d["name"]), str(d["kind"]), int(d["latents"]),
                         tuple(d["shape"]), tuple(d["split_intervals"]),
                         int(d["max_prod_block_conns"]), int(d["paper_edges"]))


#: the paper's four structures, as chosen here (see the module docstring)
PAPER = {
    "pd-mid": Structure("pd-mid", "pd", 128, paper_edges=107_000_000),
    "pd-large": Structure("pd-large", "pd", 256, paper_edges=405_000_000),
    "hclt-mid": Structure("hclt-mid", "hclt", 144, paper_edges=40_000_000),
    "hclt-large": Structure("hclt-large", "hclt", 304, paper_edges=174_000_000),
}


def synthetic_images(n: int, shape: Sequence[int] = IMAGE_SHAPE, *, seed: int = 0,
                     coarse: int | None = None, chunk: int = 4096) -> np.ndarray:
    """``n`` images of ``shape`` (channels, rows, columns) with values 0..255 as ``uint8 [n, V]``.

    Each image is a smooth random field: Gaussian noise on a ``coarse x coarse`` grid (default
    a quarter of the columns, at least 2; one
    component shared by the channels, one per channel) bilinearly upsampled, plus pixel noise,
    scaled and rounded to 0..255. Neighbouring pixels and the channels of a pixel are
    correlated, so a Chow-Liu tree of such data follows the image grid (no constant pixels,
    no ties). Speed and memory of training do not depend on the values; the tree does.
    """
    ch, rows, cols = (int(s) for s in shape)
    coarse = coarse or max(2, cols // 4)
    rng = np.random.default_rng(seed)
    up_r, up_c = _bilinear(rows, coarse), _bilinear(cols, coarse)
    out = np.empty((n, ch * rows * cols), dtype=np.uint8)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        low = (0.8 * rng.standard_normal((m, 1, coarse, coarse))
               + 0.6 * rng.standard_normal((m, ch, coarse, coarse)))
        img = np.einsum("ij,mcjk,lk->mcil", up_r, low, up_c, optimize=True)
        img += 0.35 * rng.standard_normal(img.shape)
        out[s: s + m] = np.clip(np.rint(128.0 + 48.0 * img), 0, 255).reshape(m, -1)
    return out


def _bilinear(n: int, coarse: int) -> np.ndarray:
    """``[n, coarse]`` bilinear interpolation weights (pixel centers aligned)."""
    pos = np.clip((np.arange(n) + 0.5) * coarse / n - 0.5, 0, coarse - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, coarse - 1)
    w = np.zeros((n, coarse))
    np.add.at(w, (np.arange(n), lo), 1.0 - (pos - lo))
    np.add.at(w, (np.arange(n), hi), pos - lo)
    return w


def pd_block_size(latents: int) -> int:
    """PyJuice's (and pccc's) default PD block size for ``latents``."""
    from pccc.structures.pd import default_block_size

    return default_block_size(latents)


def pd_edge_count(s: Structure) -> tuple[int, int]:
    """(sum edges, product edges) of PD ``s`` in closed form over its regions.

    A leaf region of ``v`` variables has a product of its ``v`` input vectors (``L v``
    product edges) and a block-diagonal sum (``L * block``); a region with ``P`` splits has
    ``P`` products of two halves (``2 L P``) and a sum of ``L`` nodes over ``min(P, max
    conns)`` products of ``L`` (the root: one node over all ``P L``; with no split at all,
    pccc adds a node over the leaf's ``L``).
    """
    lat, bs = s.latents, pd_block_size(s.latents)
    pts = [list(range(k, n, k)) for k, n in zip(s.split_intervals, s.shape)]
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    se = pe = 0
    stack = [(tuple(0 for _ in s.shape), tuple(s.shape))]
    root = stack[0]
    while stack:
        lo, hi = stack.pop()
        if (lo, hi) in seen:
            continue
        seen.add((lo, hi))
        splits = 0
        for ax, ps in enumerate(pts):
            for sp in (p for p in ps if lo[ax] < p < hi[ax]):
                stack.append((lo, hi[:ax] + (sp,) + hi[ax + 1:]))
                stack.append((lo[:ax] + (sp,) + lo[ax + 1:], hi))
                splits += 1
        if not splits:
            pe += lat * math.prod(h - w for w, h in zip(lo, hi))
            se += lat * bs + (lat if (lo, hi) == root else 0)  # pccc's single root node
        else:
            pe += 2 * lat * splits
            mixed = splits if (lo, hi) == root else min(splits, s.max_prod_block_conns)
            se += (1 if (lo, hi) == root else lat) * mixed * lat
    return se, pe


def hclt_edge_count(parent: np.ndarray, latents: int) -> tuple[int, int]:
    """(sum edges, product edges) of the HCLT of tree ``parent`` with ``latents`` states:
    ``(I - 1) L^2 + L`` and ``L (V - 1 + I)`` for ``I`` inner variables of ``V``."""
    parent = np.asarray(parent)
    v = len(parent)
    inner = int(np.count_nonzero(np.bincount(parent[parent >= 0], minlength=v)))
    return (inner - 1) * latents * latents + latents, latents * (v - 1 + inner)


def learn_tree(x: Any, device: Any = None) -> np.ndarray:
    """pccc's Chow-Liu tree of ``x`` (``parent[v]``; PyJuice's soft-binned estimate)."""
    from pccc.structures.hclt import learn_tree as _learn

    return _learn(x, device=device)


def cached_tree(shape: Sequence[int], examples: int, path: str | None = None) -> np.ndarray:
    """The tree of the first ``examples`` synthetic images of ``shape``, read from ``path``
    when it holds one for the same shape and examples (else learned and written there)."""
    key = np.array(list(shape) + [examples])
    if path and Path(path).exists():
        with np.load(path) as f:
            if np.array_equal(f["key"], key):
                return f["parent"]
    parent = learn_tree(synthetic_images(examples, shape))
    if path:
        np.savez(path, key=key, parent=parent)
    return parent


def edge_count(s: Structure, parent: np.ndarray | None = None) -> tuple[int, int]:
    """(sum edges, product edges) of ``s`` (HCLT: of the tree ``parent``)."""
    if s.kind == "pd":
        return pd_edge_count(s)
    if parent is None:
        raise ValueError(f"{s.name}: an HCLT's edge count needs its tree")
    return hclt_edge_count(parent, s.latents)


def build_ours(s: Structure, parent: np.ndarray | None = None, seed: int | None = None):
    """pccc's circuit of ``s`` (``seed`` None: uniform parameters, no parameter memory)."""
    from pccc.structures import PD, InputSpec, hclt_from_tree

    if s.kind == "pd":
        return PD(s.shape, s.latents, split_intervals=s.split_intervals,
                  max_prod_block_conns=s.max_prod_block_conns, num_cats=256, seed=seed)
    if parent is None:
        raise ValueError(f"{s.name}: an HCLT needs its tree")
    return hclt_from_tree(parent, s.latents, InputSpec.parse("categorical", card=256), seed=seed)


def build_pyjuice(s: Structure, parent: np.ndarray | None = None, x: Any = None):
    """PyJuice 2.6.3's node graph of ``s``: ``juice.structures.PD``; for HCLT its own
    ``juice.structures.HCLT`` of the data ``x`` (a tensor) or, given only ``parent``, its
    hidden-tree builder on that tree."""
    import pyjuice as juice

    if s.kind == "pd":
        return juice.structures.PD(data_shape=s.shape, num_latents=s.latents,
                                   split_intervals=s.split_intervals,
                                   max_prod_block_conns=s.max_prod_block_conns,
                                   structure_type="sum_dominated")
    if x is not None:
        return juice.structures.HCLT(x, num_latents=s.latents)
    import networkx as nx
    from pyjuice.nodes.distributions import Categorical
    from pyjuice.structures.hclt import BayesianTreeToHiddenRegionGraph

    if parent is None:
        raise ValueError(f"{s.name}: PyJuice's HCLT needs data or a tree")
    tree = nx.Graph()
    tree.add_nodes_from(range(len(parent)))
    tree.add_edges_from((int(v), int(p)) for v, p in enumerate(parent) if p >= 0)
    root = int(np.flatnonzero(np.asarray(parent) < 0)[0])
    return BayesianTreeToHiddenRegionGraph(tree, root, s.latents, Categorical,
                                           {"num_cats": 256}, num_root_ns=1)


def pyjuice_counts(root: Any) -> tuple[int, int]:
    """(sum edges, product edges) over a PyJuice node graph (``structure_counts.py``'s)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from structure_counts import pyjuice_counts as count

    return count(root)


def count_rows(names: Sequence[str], tree_examples: int = TREE_EXAMPLES, build: bool = False,
               pyjuice: bool = False, structures: dict[str, Structure] | None = None,
               tree_file: str | None = None) -> list[dict]:
    """One row per structure: the closed-form counts, and pccc's / PyJuice's built counts."""
    table = structures or PAPER
    parents: dict[tuple[int, ...], np.ndarray] = {}
    rows = []
    for name in names:
        s = table[name]
        row: dict = {"structure": name, "kind": s.kind, "latents": s.latents,
                     "shape": list(s.shape), "paper_edges": s.paper_edges}
        if s.kind == "hclt" and s.shape not in parents:
            t0 = time.perf_counter()
            parents[s.shape] = cached_tree(s.shape, tree_examples, tree_file)
            row["tree_s"] = round(time.perf_counter() - t0, 2)
        rows.append(_count_row(row, s, parents.get(s.shape) if s.kind == "hclt" else None,
                               tree_examples, build, pyjuice))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _count_row(row: dict, s: Structure, parent: np.ndarray | None, tree_examples: int,
               build: bool, pyjuice: bool) -> dict:
    from pccc.ir import counts

    if parent is None:
        row.update(split_intervals=list(s.split_intervals),
                   max_prod_block_conns=s.max_prod_block_conns)
    else:
        row.update(tree_examples=tree_examples,
                   inner_vars=int(np.count_nonzero(np.bincount(parent[parent >= 0]))))
    se, pe = edge_count(s, parent)
    row.update(sum_edges=se, product_edges=pe, edges=se + pe)
    if s.paper_edges:
        row["vs_paper"] = round((se + pe) / s.paper_edges - 1, 4)
    if build:
        t0 = time.perf_counter()
        k = counts(build_ours(s, parent))
        row.update(pccc_build_s=round(time.perf_counter() - t0, 2), pccc_sum_edges=k.sum_edges,
                   pccc_product_edges=k.product_edges)
    if pyjuice:
        t0 = time.perf_counter()
        ns = build_pyjuice(s, parent)
        row["pyjuice_build_s"] = round(time.perf_counter() - t0, 2)
        row["pyjuice_sum_edges"], row["pyjuice_product_edges"] = pyjuice_counts(ns)
    return row


def _m(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}M"


def print_table(rows: Sequence[dict]) -> None:
    print(f"{'structure':11} {'latents':>7} {'edges':>9} {'sum':>9} {'product':>8} "
          f"{'pccc built':>10} {'PyJuice':>9} {'paper':>7} {'vs paper':>8}")
    for r in rows:
        built = r.get("pccc_sum_edges")
        pj = r.get("pyjuice_sum_edges")
        vs = f"{100 * r['vs_paper']:+.1f}%" if "vs_paper" in r else "-"
        print(f"{r['structure']:11} {r['latents']:>7} {_m(r['edges']):>9} {_m(r['sum_edges']):>9} "
              f"{_m(r['product_edges']):>8} "
              f"{_m(None if built is None else built + r['pccc_product_edges']):>10} "
              f"{_m(None if pj is None else pj + r['pyjuice_product_edges']):>9} "
              f"{_m(r['paper_edges'] or None):>7} {vs:>8}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--which", default=",".join(PAPER))
    p.add_argument("--tree-examples", type=int, default=TREE_EXAMPLES,
                   help="synthetic images the HCLT tree is learned from")
    p.add_argument("--tree", default=None, metavar="PATH.npz",
                   help="read the HCLT tree from here if it is there, else write it there")
    p.add_argument("--latents", action="append", default=[], metavar="NAME=L",
                   help="override a structure's latents (repeatable), e.g. hclt-mid=128")
    p.add_argument("--build", action="store_true",
                   help="also build pccc's circuits (uniform parameters) and count their IR")
    p.add_argument("--pyjuice", action="store_true",
                   help="also build PyJuice 2.6.3's structures (pyjuice importable)")
    a = p.parse_args(argv)
    table = dict(PAPER)
    for item in a.latents:
        name, _, lat = item.partition("=")
        table[name] = replace(table[name], latents=int(lat))
    rows = count_rows([w for w in a.which.split(",") if w], a.tree_examples, a.build,
                      a.pyjuice, table, a.tree)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
