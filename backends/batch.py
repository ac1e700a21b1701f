"""``Batch``: a batch of data as the input layers of a
:class:`~pccc.backends.module.CompiledCircuit` read it (made by its ``prepare``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Batch:
    """A batch as the input layers read it: one row per variable, the batch along columns."""

    xd: Tensor
    """int64 ``[V, batch]`` values (missing: 0)"""
    xc: Tensor | None
    """float ``[V, batch]`` values for continuous families (None: the circuit has none)"""
    miss: Tensor | None
    """bool ``[V, batch]`` (None: nothing is missing in this batch)"""

    saved: dict[int, Any] = field(default_factory=dict)
    """per input layer: its rows and forward results, kept from forward to backward"""

    def rows(self, i: int, vars_: Tensor, grouped: Tensor | None = None, units: int = 0
             ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(discrete, continuous, missing) ``[n, batch]`` rows of input layer ``i``'s
        variables (gathered once per batch). ``grouped``: one variable per run of ``units``
        nodes; with nothing missing the discrete rows are then a ``[runs, units, batch]``
        broadcast view, not a copy."""
        key = -1 - i
        if key not in self.saved and grouped is not None and self.miss is None:
            xd = self.xd.index_select(0, grouped)
            self.saved[key] = (xd[:, None, :].expand(xd.shape[0], units, xd.shape[1]), xd, None)
        if key not in self.saved:
            xd = self.xd.index_select(0, vars_)
            xc = xd if self.xc is None else self.xc.index_select(0, vars_)
            self.saved[key] = (xd, xc,
                               None if self.miss is None else self.miss.index_select(0, vars_))
        return self.saved[key]
