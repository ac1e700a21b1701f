"""The pccc intermediate representations (L0 logical circuit; L1-L3 lowered levels; L4 a
backend's kernel schedule).

Importing the package registers the printer and the parser of every level, so
:func:`to_text` prints and :func:`parse` reads L0 to L4.
"""

from pccc.ir import dists
from pccc.ir.analyses import counts, depths, reachable, scopes
from pccc.ir.builder import CircuitBuilder
from pccc.ir.circuit import Circuit, InputVector, Node, ProductVector, SumVector
from pccc.ir.errors import DataError, ParseError, PassError, PcccError, VerifyError
from pccc.ir.parser import parse, parse_circuit
from pccc.ir.printer import to_text, to_text_npz
from pccc.ir.verify import is_decomposable, is_normalized, is_smooth, verify

# (the lowered levels' printers and parsers register themselves: every level reads and prints)
from pccc.ir import parse_lowered as _parse_lowered  # noqa: E402, F401  isort: skip
from pccc.ir import parse_schedule as _parse_schedule  # noqa: E402, F401  isort: skip
from pccc.ir import print_schedule as _print_schedule  # noqa: E402, F401  isort: skip

__all__ = [
    "Circuit", "CircuitBuilder", "DataError", "InputVector", "Node", "ParseError", "PassError",
    "PcccError", "ProductVector", "SumVector", "VerifyError", "counts", "depths", "dists",
    "is_decomposable", "is_normalized", "is_smooth", "parse", "parse_circuit", "reachable",
    "scopes", "to_text", "to_text_npz", "verify",
]
