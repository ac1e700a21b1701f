"""``group-blocks`` (L0 -> L1): cut every sum vector into dense ``B x C`` weight tiles.

For each sum vector of ``n`` nodes over ``m`` child elements the pass picks the node-block size
``B`` and the element-chunk size ``C`` separately: the largest power of two between
``min-block`` and ``block-size`` whose zero padding wastes at most ``tolerance`` of the padded
size; for a side of ``min-block`` or more that no size fits so, the largest that wastes at
most ``fallback`` (33 nodes: one block of 64, where one-row blocks trained an HCLT of 33
latents 1.4-2x slower on the CPU backend: notes log 107); else 1 (the sparse form). Dense
vectors (32..256 latents) get tensor-core tiles (multiples of 16); the scalar sums of circuits
read from files get ``B = C = 1``. A root that is not a sum vector is wrapped in a sum of as
many nodes with identity weights, so that every plan ends in sums.

The pass looks at vector sizes only; it never touches the weights.
"""

from __future__ import annotations

from pccc.ir.blocked import ROOT_KEY, BlockedCircuit, ceil_div, run_length, wrap_root
from pccc.ir.circuit import Circuit, SumVector
from pccc.ir.errors import PassError
from pccc.passes.registry import register_pass


def pick_size(size: int, block_size: int, min_block: int, tolerance: float,
              fallback: float = 0.0) -> int:
    """The largest power of two in ``[min_block, block_size]`` (or ``block_size`` itself)
    whose padding of ``size`` wastes at most ``tolerance``; when none does and ``size`` is at
    least ``min_block``, the largest that wastes at most ``fallback``; else 1."""
    B = _largest_fit(size, block_size, min_block, tolerance)
    if B == 1 and size >= min_block and fallback > tolerance:
        B = _largest_fit(size, block_size, min_block, fallback)
    return B


def _largest_fit(size: int, block_size: int, min_block: int, tolerance: float) -> int:
    cands = {block_size}
    b = 1
    while b <= block_size:
        if b >= min_block:
            cands.add(b)
        b *= 2
    for B in sorted(cands, reverse=True):
        if B <= 1:
            break
        if B >= 2 * size:  # never a block more than twice the vector
            continue
        padded = ceil_div(size, B) * B
        if (padded - size) <= tolerance * padded:
            return B
    return 1


def rooted(c: Circuit) -> Circuit:
    """``c`` with a sum root: a product or input root of ``n`` nodes gets a sum vector of
    ``n`` nodes whose weights are the identity (root ``r`` passes its node ``r`` through;
    ``layout-params`` keeps the zero weights out of every normalization group)."""
    if isinstance(c.nodes[c.root], SumVector):
        return c
    if ROOT_KEY in c.params:
        raise PassError(f"parameter key {ROOT_KEY!r} is reserved")
    return wrap_root(c)


@register_pass("group-blocks", input_level="L0", output_level="L1")
def group_blocks(c: Circuit, *, block_size: int = 64, min_block: int = 16,
                 tolerance: float = 0.25, fallback: float = 0.5) -> BlockedCircuit:
    """Pack sum nodes into B x C weight tiles (B, C: powers of two up to block-size, or 1).

    Args:
        block_size: largest tile side (a multiple of 16 suits tensor cores).
        min_block: smallest tile side above 1; smaller vectors fall back to 1 (sparse).
        tolerance: largest fraction of a padded tile side allowed to be padding.
        fallback: the same for a side of at least ``min_block`` that no size fits within
            ``tolerance`` (at most ``fallback``: the largest such size; 0: 1, sparse).
    """
    if block_size < 1 or min_block < 1:
        raise PassError("group-blocks: block-size and min-block must be positive")
    if not 0.0 <= tolerance < 1.0 or not 0.0 <= fallback < 1.0:
        raise PassError("group-blocks: tolerance and fallback must be in [0, 1)")
    c = rooted(c)
    blocks: dict[int, tuple[int, int]] = {}
    for i, nd in enumerate(c.nodes):
        if isinstance(nd, SumVector):
            B = pick_size(nd.n, block_size, min_block, tolerance, fallback)
            C = pick_size(run_length(c, i), block_size, min_block, tolerance, fallback)
            blocks[i] = (B, C)
    return BlockedCircuit(c, blocks)
