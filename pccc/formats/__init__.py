"""Circuit file formats, chosen by extension.

Each format module registers its reader and/or writer here. ``load`` and ``save`` dispatch on the
longest matching suffix (``.jpc.gz`` before ``.gz``). Writers must write atomically (see
:func:`pccc.files.atomic_write`): a failed save leaves nothing behind.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from pccc.files import atomic_write, check_output
from pccc.ir.circuit import Circuit
from pccc.ir.errors import PcccError

Reader = Callable[[Path], Circuit]
Writer = Callable[[Circuit, IO[bytes]], None]

_READERS: dict[str, Reader] = {}
_WRITERS: dict[str, Writer] = {}

#: format modules imported on first use; a missing one is skipped
_MODULES = ("pcir", "jpc", "psdd", "spn")


def register_reader(suffix: str, fn: Reader) -> None:
    _READERS[suffix] = fn


def register_writer(suffix: str, fn: Writer) -> None:
    _WRITERS[suffix] = fn


def _load_modules() -> None:
    for name in _MODULES:
        try:
            importlib.import_module(f"pccc.formats.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"pccc.formats.{name}":
                raise


def _match(path: Path, table: dict[str, object]) -> str | None:
    name = path.name.lower()
    for suffix in sorted(table, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def readable() -> list[str]:
    _load_modules()
    return sorted(_READERS)


def writable() -> list[str]:
    _load_modules()
    return sorted(_WRITERS)


def load(path: str | os.PathLike[str]) -> Circuit:
    """Read a circuit file of any readable format."""
    _load_modules()
    p = Path(path)
    suffix = _match(p, _READERS)  # type: ignore[arg-type]
    if suffix is None:
        raise PcccError(f"{p}: unknown circuit format (readable: {', '.join(readable())})")
    if not p.exists():
        raise PcccError(f"{p}: no such file")
    with np.errstate(over="ignore"):  # (exp of a log-weight >= 710 is inf: the verifier says
        return _READERS[suffix](p)  # where; numpy's warning would only add noise)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Refuse an output path early: unknown format, a folder that does not exist, or a path
    that is a folder."""
    _load_modules()
    p = Path(path)
    if _match(p, _WRITERS) is None:  # type: ignore[arg-type]
        raise PcccError(f"{p}: cannot write this format (writable: {', '.join(writable())})")
    check_output(p)


def save(circuit: Circuit, path: str | os.PathLike[str]) -> None:
    """Write a circuit in the format chosen by the extension, atomically."""
    check_writable(path)
    p = Path(path)
    writer = _WRITERS[_match(p, _WRITERS)]  # type: ignore[arg-type,index]
    with atomic_write(p) as f:
        writer(circuit, f)
