"""The pccc intermediate representations (L0 logical circuit; L1-L3 lowered levels)."""

from pccc.ir import dists
from pccc.ir.analyses import counts, depths, reachable, scopes
from pccc.ir.builder import CircuitBuilder
from pccc.ir.circuit import Circuit, InputVector, Node, ProductVector, SumVector
from pccc.ir.errors import DataError, ParseError, PassError, PcccError, VerifyError

__all__ = [
    "Circuit", "CircuitBuilder", "DataError", "InputVector", "Node", "ParseError", "PassError",
    "PcccError", "ProductVector", "SumVector", "VerifyError", "counts", "depths", "dists",
    "reachable", "scopes",
]
