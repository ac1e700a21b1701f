"""pccc: a compiler for probabilistic circuits.

``import pccc`` loads the IR and the API below, not torch. The submodules load on first use,
by attribute as well as by import: ``pccc.structures``, ``pccc.optim``, ``pccc.formats``, ...
"""

__version__ = "0.1.0"

import importlib  # noqa: E402
from typing import Any  # noqa: E402

from pccc import optim  # noqa: E402  (light: no torch import)
from pccc.api import compile, load, load_module, load_plugin, save  # noqa: E402
from pccc.ir.errors import PcccError  # noqa: E402

__all__ = ["PcccError", "__version__", "compile", "load", "load_module", "load_plugin", "optim",
           "save"]


def __getattr__(name: str) -> Any:
    """A submodule not imported yet (``pccc.structures``), imported on first use."""
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs something missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
