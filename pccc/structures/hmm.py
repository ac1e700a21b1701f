"""Hidden Markov models as circuits, with tied (homogeneous) parameters.

A sequence ``x_0 .. x_{T-1}`` of values in ``0..num_emits-1`` with hidden states ``z_t`` of
``L = num_latents`` values. Built from the end of the sequence backwards:

- ``e_t``: an input vector of ``L`` categorical nodes over ``x_t`` (``p(x_t | z_t = i)``);
- ``s_t``: a sum vector of ``L`` nodes over ``h_{t+1}`` (dense ``L x L``: ``p(z_{t+1} | z_t)``);
- ``h_t``: the element-wise product of ``e_t`` and ``s_t`` (``h_{T-1} = e_{T-1}``);
- the root: one sum node over ``h_0`` (the initial distribution).

With ``homogeneous=True`` every ``e_t`` names one parameter key and every ``s_t`` another: the
parameters are stored once and their flows add up over the time steps.

Example::

    circuit = HMM(seq_length=32, num_latents=64, num_emits=50)
"""

from __future__ import annotations

from pccc.ir.builder import CircuitBuilder
from pccc.ir.circuit import Circuit
from pccc.structures.init import ParamDraw
from pccc.structures.input_layers import InputSpec

#: parameter keys of a homogeneous HMM
EMISSION_KEY = "emission"
TRANSITION_KEY = "transition"


def HMM(seq_length: int, num_latents: int, num_emits: int, homogeneous: bool = True, *,
        seed: int | None = 0, init_spread: tuple[float, float] = (4.0, 4.0)
        ) -> Circuit:
    """Build an HMM circuit.

    Args:
        seq_length: ``T``, the number of observed variables.
        num_latents: hidden states.
        num_emits: values of each observed variable.
        homogeneous: tie the emission and the transition parameters across time steps.
        seed: random initial parameters (None: uniform).
        init_spread: spreads ``(sums, inputs)`` of the random initial draw
            (:class:`~pccc.structures.init.InitSpread`: PyJuice's 4 and 2).
    """
    if seq_length < 1 or num_latents < 1 or num_emits < 1:
        raise ValueError("HMM: seq_length, num_latents and num_emits must be >= 1")
    draw = ParamDraw.from_seed(seed, init_spread)
    spec = InputSpec.parse("categorical", card=num_emits)
    b = CircuitBuilder()
    lat = num_latents

    def emission(t: int) -> int:
        if not homogeneous:
            return spec.add(b, t, lat, draw)
        vid = spec.add(b, t, lat, draw, tie=EMISSION_KEY)
        return vid

    def transition(child: int) -> int:
        if not homogeneous:
            return b.sum([child], n=lat, weights=draw.sum_weights(lat, lat))
        w = None if TRANSITION_KEY in b.params else draw.sum_weights(lat, lat)
        return b.sum([child], n=lat, weights=w, tie=TRANSITION_KEY)

    h = emission(seq_length - 1)
    for t in range(seq_length - 2, -1, -1):
        s = transition(h)
        h = b.product([emission(t), s])
    root = b.sum([h], n=1, weights=draw.sum_weights(1, lat))
    return b.build(root, num_vars=seq_length)
