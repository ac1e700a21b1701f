"""Poon-Domingos (PD) structures: recursive axis-aligned splits of a hypercube of variables.

For data of shape ``(H, W, ...)`` (row-major variable ids), every hypercube between split points
is a *region* with ``L = num_latents`` sum nodes, in blocks of ``block_size`` (PyJuice 2.6.3's
choice: 16 or 32). The shapes follow what PyJuice builds for the same arguments
(``structure_type="sum_dominated"``):

- a hypercube with no split point inside is a leaf region: one input vector of ``L`` nodes per
  variable, an element-wise product of them, and a block-diagonal sum (sum block ``b`` mixes
  product block ``b``: ``L * block_size`` edges);
- every split point of every axis gives a product of the two halves (``L`` nodes, element-wise);
- a region with at most ``max_prod_block_conns`` such products has a dense sum over all of
  them; with more, each sum block mixes ``max_prod_block_conns`` of them picked at random;
- the root region has a single sum node over all its products.

The L0 IR has dense sum tiles only, so a region whose sum is block-sparse is held as one sum
vector per block (``block_size`` nodes each); a region is then a list of *segments*, and a
product over segmented regions is built per block. Edge counts are unchanged by this.

Example::

    circuit = PD((28, 28), num_latents=64, split_intervals=(4, 4), num_cats=256)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pccc.ir.builder import CircuitBuilder
from pccc.ir.circuit import Circuit
from pccc.structures.init import ParamDraw
from pccc.structures.input_layers import InputSpec

Cube = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass
class _Region:
    """The ``L`` nodes of a region: one vector of ``L`` or ``L / bs`` vectors of ``bs``."""

    segs: list[int]

    def block(self, b: int, bs: int) -> tuple[int, np.ndarray | None]:
        """Vector id and node indices (None: the whole vector) of block ``b``."""
        if len(self.segs) == 1:
            return self.segs[0], np.arange(b * bs, (b + 1) * bs)
        return self.segs[b], None


def default_block_size(num_latents: int) -> int:
    """PyJuice's block size for PD: the largest power of two dividing ``num_latents``, capped
    at 16 (``num_latents <= 32``) or 32."""
    p2 = num_latents & -num_latents
    return min(16 if num_latents <= 32 else 32, p2)


def _split_points(data_shape: Sequence[int], split_intervals: int | Sequence[int] | None,
                  split_points: Sequence[Sequence[int]] | None) -> list[list[int]]:
    if split_points is not None:
        if len(split_points) != len(data_shape):
            raise ValueError("PD: one list of split points per axis is needed")
        return [sorted(int(p) for p in pts if 0 < p < size)
                for pts, size in zip(split_points, data_shape)]
    if split_intervals is None:
        raise ValueError("PD: give split_intervals or split_points")
    if isinstance(split_intervals, int):
        split_intervals = (split_intervals,) * len(data_shape)
    return [list(range(k, size, k)) for k, size in zip(split_intervals, data_shape)]


class _PDBuilder:
    """Builds the regions bottom-up with memoization on the hypercube."""

    def __init__(self, shape: tuple[int, ...], lat: int, bs: int, spec: InputSpec,
                 points: list[list[int]], max_conns: int, max_depth: int | None,
                 draw: ParamDraw, choice_rng: np.random.Generator):
        self.shape, self.lat, self.bs, self.spec = shape, lat, bs, spec
        self.points, self.max_conns, self.max_depth = points, max_conns, max_depth
        self.draw, self.choice_rng = draw, choice_rng
        self.b = CircuitBuilder()
        self.memo: dict[Cube, _Region] = {}
        self.inputs: dict[int, int] = {}
        self.strides = np.cumprod((1,) + shape[::-1])[:-1][::-1]

    def variables(self, cube: Cube) -> np.ndarray:
        grids = np.meshgrid(*[np.arange(s, e) for s, e in zip(*cube)], indexing="ij")
        ids = np.zeros(grids[0].shape, dtype=np.int64)
        for g, st in zip(grids, self.strides):
            ids += g * int(st)
        return ids.reshape(-1)

    def product(self, regions: Sequence[_Region]) -> _Region:
        """Element-wise product of regions, per block when any of them is segmented."""
        if all(len(r.segs) == 1 for r in regions):
            return _Region([self.b.product([r.segs[0] for r in regions])])
        segs = []
        for blk in range(self.lat // self.bs):
            parts = [r.block(blk, self.bs) for r in regions]
            table = np.stack([np.arange(self.bs) if idx is None else idx for _, idx in parts], 1)
            segs.append(self.b.product([vid for vid, _ in parts], edges=table))
        return _Region(segs)

    def leaf(self, cube: Cube) -> _Region:
        """Inputs of every variable, then per block a product over them and a sum."""
        ins = []
        for v in self.variables(cube).tolist():
            if v not in self.inputs:
                self.inputs[v] = self.spec.add(self.b, v, self.lat, self.draw)
            ins.append(self.inputs[v])
        segs = []
        for blk in range(self.lat // self.bs):
            idx = np.arange(blk * self.bs, (blk + 1) * self.bs)
            prod = self.b.product(ins, edges=np.repeat(idx[:, None], len(ins), axis=1))
            segs.append(self.b.sum([prod], n=self.bs,
                                   weights=self.draw.sum_weights(self.bs, self.bs)))
        return _Region(segs)

    def mix(self, prods: list[_Region], root: bool) -> _Region:
        if root or len(prods) <= self.max_conns:
            n = 1 if root else self.lat
            kids = [s for p in prods for s in p.segs]
            m = sum(self.b.size(k) for k in kids)
            return _Region([self.b.sum(kids, n=n, weights=self.draw.sum_weights(n, m))])
        segs = []
        for _ in range(self.lat // self.bs):
            pick = np.sort(self.choice_rng.permutation(len(prods))[:self.max_conns])
            kids = [s for i in pick.tolist() for s in prods[i].segs]
            m = sum(self.b.size(k) for k in kids)
            segs.append(self.b.sum(kids, n=self.bs, weights=self.draw.sum_weights(self.bs, m)))
        return _Region(segs)

    def region(self, cube: Cube, depth: int, root: bool = False) -> _Region:
        if cube in self.memo:
            return self.memo[cube]
        prods = []
        if self.max_depth is None or depth <= self.max_depth:
            for ax, pts in enumerate(self.points):
                lo, hi = cube[0][ax], cube[1][ax]
                for sp in (p for p in pts if lo < p < hi):
                    left = (cube[0], cube[1][:ax] + (sp,) + cube[1][ax + 1:])
                    right = (cube[0][:ax] + (sp,) + cube[0][ax + 1:], cube[1])
                    prods.append(self.product([self.region(left, depth + 1),
                                               self.region(right, depth + 1)]))
        out = self.leaf(cube) if not prods else self.mix(prods, root)
        self.memo[cube] = out
        return out


def PD(data_shape: Sequence[int], num_latents: int, *,
       split_intervals: int | Sequence[int] | None = None,
       split_points: Sequence[Sequence[int]] | None = None, max_split_depth: int | None = None,
       max_prod_block_conns: int = 4, block_size: int | None = None,
       input_dist: str | InputSpec = "categorical", num_cats: int = 256,
       seed: int | None = 0, init_spread: tuple[float, float] = (4.0, 4.0)
       ) -> Circuit:
    """Build a Poon-Domingos circuit over ``prod(data_shape)`` variables.

    Args:
        data_shape: e.g. ``(28, 28)`` for MNIST; variable ids are row-major.
        num_latents: sum nodes per region (a multiple of ``block_size``).
        split_intervals: distance between split points per axis (an int for all axes).
        split_points: explicit split points per axis (instead of ``split_intervals``).
        max_split_depth: stop splitting below this depth (regions become leaves).
        max_prod_block_conns: most products one sum block mixes.
        block_size: nodes per sum block (default: :func:`default_block_size`).
        input_dist: input distribution name or :class:`InputSpec`.
        num_cats: categories of a categorical input (trials + 1 of a binomial).
        seed: random initial parameters and random block connections (None: uniform
            parameters, connections from seed 0).
        init_spread: spreads ``(sums, inputs)`` of the random initial draw
            (:class:`~pccc.structures.init.InitSpread`: PyJuice's 4 and 2).
    """
    shape = tuple(int(s) for s in data_shape)
    bs = block_size or default_block_size(num_latents)
    if num_latents % bs:
        raise ValueError(f"PD: num_latents {num_latents} is not a multiple of block {bs}")
    spec = input_dist if isinstance(input_dist, InputSpec) else InputSpec.parse(
        input_dist, card=num_cats)
    draw = ParamDraw.from_seed(seed, init_spread)
    builder = _PDBuilder(shape, num_latents, bs, spec,
                         _split_points(shape, split_intervals, split_points),
                         max_prod_block_conns, max_split_depth, draw,
                         np.random.default_rng(0 if seed is None else seed + 1))
    whole: Cube = ((0,) * len(shape), shape)
    top = builder.region(whole, 1, root=True)
    root = top.segs[0]
    if len(top.segs) > 1 or builder.b.size(root) != 1:  # no split at all: mix the leaf
        m = sum(builder.b.size(s) for s in top.segs)
        root = builder.b.sum(top.segs, n=1, weights=draw.sum_weights(1, m))
    return builder.b.build(root, num_vars=math.prod(shape))
