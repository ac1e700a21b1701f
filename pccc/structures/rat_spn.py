"""Random and tensorized SPNs (RAT-SPN, Peharz et al. 2020).

Each of ``num_repetitions`` repetitions splits the variables at random into ``num_pieces``
parts, recursively, ``depth`` times. Every scope is a region of ``L = num_latents`` sum nodes:

- a scope at the bottom (depth reached, or fewer variables than pieces) is the element-wise
  product of its variables' input vectors (``L`` nodes each, shared by all repetitions),
  mixed by a dense ``L x L`` sum;
- an inner scope is the element-wise product of its pieces' regions, mixed the same way;
- the root has one sum node over the top products of all repetitions.

Example::

    circuit = RAT_SPN(num_vars=16, num_latents=8, depth=2, num_repetitions=4, num_cats=2)
"""

from __future__ import annotations

import numpy as np

from pccc.ir.builder import CircuitBuilder
from pccc.ir.circuit import Circuit
from pccc.structures.init import ParamDraw
from pccc.structures.input_layers import InputSpec


def _pieces(scope: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random split of ``scope`` into ``k`` parts whose sizes differ by at most one."""
    perm = rng.permutation(scope)
    q, r = divmod(len(perm), k)
    bounds = np.cumsum([0] + [q + (i < r) for i in range(k)])
    return [np.sort(perm[bounds[i]:bounds[i + 1]]) for i in range(k)]


def RAT_SPN(num_vars: int, num_latents: int, depth: int, num_repetitions: int, *,
            num_pieces: int = 2, input_dist: str | InputSpec = "categorical",
            num_cats: int = 256, seed: int | None = 0, split_seed: int = 0,
            init_spread: tuple[float, float] = (4.0, 4.0)) -> Circuit:
    """Build a RAT-SPN over ``num_vars`` variables.

    Args:
        num_vars: number of variables.
        num_latents: sum nodes per region (and input nodes per variable).
        depth: how many times scopes are split.
        num_repetitions: independent random split trees mixed at the root.
        num_pieces: parts per split.
        input_dist: input distribution name or :class:`InputSpec`.
        num_cats: categories of a categorical input (trials + 1 of a binomial).
        seed: random initial parameters (None: uniform).
        split_seed: seed of the random splits.
        init_spread: spreads ``(sums, inputs)`` of the random initial draw
            (:class:`~pccc.structures.init.InitSpread`: PyJuice's 4 and 2).
    """
    if num_vars < 1 or num_latents < 1 or num_repetitions < 1 or num_pieces < 2:
        raise ValueError("RAT_SPN: num_vars, num_latents, num_repetitions >= 1, num_pieces >= 2")
    spec = input_dist if isinstance(input_dist, InputSpec) else InputSpec.parse(
        input_dist, card=num_cats)
    draw = ParamDraw.from_seed(seed, init_spread)
    split_rng = np.random.default_rng(split_seed)
    b = CircuitBuilder()
    lat = num_latents
    ins = [spec.add(b, v, lat, draw) for v in range(num_vars)]

    def region(scope: np.ndarray, d: int) -> int:
        """The product vector of a scope (its sum is added by the caller)."""
        if d >= depth or len(scope) < num_pieces:
            return b.product([ins[v] for v in scope.tolist()])
        kids = []
        for piece in _pieces(scope, num_pieces, split_rng):
            prod = region(piece, d + 1)
            kids.append(b.sum([prod], n=lat, weights=draw.sum_weights(lat, lat)))
        return b.product(kids)

    tops = [region(np.arange(num_vars), 0) for _ in range(num_repetitions)]
    m = lat * num_repetitions
    root = b.sum(tops, n=1, weights=draw.sum_weights(1, m))
    return b.build(root, num_vars=num_vars)
