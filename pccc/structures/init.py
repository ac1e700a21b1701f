"""Initial parameters of generated circuits.

Every generator draws its parameters with a :class:`ParamDraw`: from ``seed``, each sum node's
weights and each categorical table are ``exp(-spread * u)`` normalized, ``u`` uniform in
``[0, 1)`` (PyJuice 2.6.3's draw: ``juice.compile`` draws sum weights and every input node
without parameters with spread 4; ratios within a row reach ``e^spread``). The spreads
are :class:`InitSpread`, the generators' ``init_spread`` keyword. ``seed=None`` gives uniform
parameters instead, as zero-copy broadcast views.

Other input families: Bernoulli and binomial success probabilities are the first entry of a
normalized 2-entry draw with the inputs' spread (``1 / (1 + e^s)`` to ``e^s / (1 + e^s)``:
0.02 to 0.98 at spread 4); Gaussian means are normal with standard deviation 0.5 and the
standard deviations 1.

:func:`perturb` redraws the sum weights and categorical tables of any circuit the same way.

Example::

    draw = ParamDraw.from_seed(0, InitSpread(sums=4.0, inputs=4.0))
    w = draw.sum_weights(16, 16)         # [16, 16], rows sum to 1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pccc.ir import Circuit
from pccc.ir.circuit import InputVector, SumVector


class InitSpread(NamedTuple):
    """Spreads of the initial draw ``exp(-spread * u)`` normalized per row (0: uniform rows)."""

    sums: float = 4.0
    """spread of every sum node's weights (PyJuice: 4)"""
    inputs: float = 4.0
    """spread of categorical tables and Bernoulli/binomial probabilities (PyJuice: 4)"""


def init_spread(spread: tuple[float, float] | float) -> InitSpread:
    """An :class:`InitSpread` from a pair ``(sums, inputs)`` or one spread for both; checked."""
    pair = (spread, spread) if isinstance(spread, (int, float)) else spread
    s = InitSpread(*(float(v) for v in pair))
    if not all(np.isfinite(v) and v >= 0 for v in s):
        raise ValueError(f"initial spreads must be finite and >= 0, got {tuple(s)}")
    return s


def read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def draw_rows(rng: np.random.Generator, shape: tuple[int, ...], spread: float) -> np.ndarray:
    """``exp(-spread * u)``, ``u ~ U[0, 1)`` of ``shape``, normalized along the last axis."""
    a = rng.random(shape)
    a *= -spread
    np.exp(a, out=a)
    a /= a.sum(axis=-1, keepdims=True)
    return a


@dataclass(frozen=True)
class ParamDraw:
    """Where a generator's initial parameters come from: a random stream and the spreads."""

    rng: np.random.Generator | None
    """the stream of the draw; None: uniform parameters (broadcast views)"""
    spread: InitSpread = InitSpread()
    """the spreads of sum weights and input parameters"""

    @classmethod
    def from_seed(cls, seed: int | None, spread: tuple[float, float] = (4.0, 4.0)
                  ) -> ParamDraw:
        """A draw from ``seed`` (None: uniform parameters)."""
        return cls(None if seed is None else np.random.default_rng(seed), init_spread(spread))

    def sum_weights(self, n: int, m: int) -> np.ndarray:
        """Row-normalized read-only ``[n, m]`` sum weights.

        Uniform weights (no ``rng``) are a zero-copy broadcast view, so a circuit of a hundred
        million edges can be generated (and counted) without allocating them.
        """
        if self.rng is None:
            return np.broadcast_to(np.float64(1.0 / m), (n, m))
        return read_only(draw_rows(self.rng, (n, m), self.spread.sums))


def perturb(circuit: Circuit, perturbation: tuple[float, float] | float = (4.0, 4.0),
            seed: int = 0) -> Circuit:
    """A copy of ``circuit`` whose sum weights and categorical input tables are redrawn as
    ``exp(-spread * u)``, ``u ~ U[0, 1)``, normalized per node (tied keys once).

    Args:
        circuit: any L0 circuit (other input families keep their parameters).
        perturbation: the spreads (default: the generators' :class:`InitSpread`); one number
            is the spread of both sums and categorical tables; 0 gives uniform rows.
        seed: seed of the draw.
    """
    spread = init_spread(perturbation)
    keys: dict[str, float] = {}  # ordered: the draw does not depend on set order
    for node in circuit.nodes:
        if isinstance(node, SumVector):
            keys[node.param] = spread.sums
        elif isinstance(node, InputVector) and node.dist == "categorical" and node.param:
            keys[node.param] = spread.inputs
    rng = np.random.default_rng(seed)
    new = {key: draw_rows(rng, circuit.params[key].shape, s) for key, s in keys.items()}
    return circuit.with_params(new)
