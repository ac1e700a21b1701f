"""Optimizers for compiled circuits: EM from the flows that backward passes accumulate.

Example::

    opt = pccc.optim.MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    for x in batches:
        model(x).sum().backward()     # accumulates the flows (and gradients)
        opt.step()                    # one EM step, then the flows are reset
"""

from pccc.optim.em import FullBatchEM, MiniBatchEM

__all__ = ["FullBatchEM", "MiniBatchEM"]
