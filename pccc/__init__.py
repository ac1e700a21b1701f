"""pccc: a compiler for probabilistic circuits."""

__version__ = "0.1.0"

from pccc import optim  # noqa: E402  (light: no torch import)
from pccc.api import compile, load, load_module, save  # noqa: E402

__all__ = ["__version__", "compile", "load", "load_module", "optim", "save"]
