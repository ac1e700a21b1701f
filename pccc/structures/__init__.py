"""Structure generators: each returns an L0 :class:`~pccc.ir.Circuit`.

- :func:`HCLT`: hidden Chow-Liu trees learned from data.
- :func:`PD`: Poon-Domingos hypercube splits over images.
- :func:`RAT_SPN`: random and tensorized SPNs.
- :func:`HMM`: hidden Markov models (homogeneous: tied parameters).

Initial parameters are PyJuice's draw (sum rows ``exp(-4u)`` normalized, categorical tables
``exp(-4u)``), with the spreads as every generator's ``init_spread`` (:class:`InitSpread`);
``seed=None`` gives uniform ones. :func:`perturb` redraws any circuit's the same way.

Input distributions are chosen with ``input_dist`` (``categorical``, ``bernoulli``,
``binomial``, ``gaussian``) or an :class:`InputSpec`.

Example::

    from pccc.structures import HCLT
    circuit = HCLT(x_train, num_latents=16)
"""

from pccc.structures.chow_liu import chow_liu_tree, mutual_information
from pccc.structures.hclt import HCLT, hclt_from_tree
from pccc.structures.hmm import HMM
from pccc.structures.init import InitSpread, perturb
from pccc.structures.input_layers import INPUT_DISTS, InputSpec
from pccc.structures.pd import PD
from pccc.structures.rat_spn import RAT_SPN

#: generator name (as the command line spells it) -> function
GENERATORS = {"hclt": HCLT, "pd": PD, "rat-spn": RAT_SPN, "hmm": HMM}

__all__ = [
    "GENERATORS", "HCLT", "HMM", "INPUT_DISTS", "PD", "RAT_SPN", "InitSpread", "InputSpec",
    "chow_liu_tree", "hclt_from_tree", "mutual_information", "perturb",
]
