"""Circuit file formats, chosen by extension.

Each format module registers its reader and/or writer here. ``load`` and ``save`` dispatch on the
longest matching suffix (``.jpc.gz`` before ``.gz``). Writers must write atomically (see
:func:`atomic_write`): a failed save leaves nothing behind.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
    return _READERS[suffix](p)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Refuse an output path early: unknown format or a folder that does not exist."""
    _load_modules()
    p = Path(path)
    if _match(p, _WRITERS) is None:  # type: ignore[arg-type]
        raise PcccError(f"{p}: cannot write this format (writable: {', '.join(writable())})")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise PcccError(f"{p}: folder {parent} does not exist")


def save(circuit: Circuit, path: str | os.PathLike[str]) -> None:
    """Write a circuit in the format chosen by the extension, atomically."""
    check_writable(path)
    p = Path(path)
    writer = _WRITERS[_match(p, _WRITERS)]  # type: ignore[arg-type,index]
    with atomic_write(p) as f:
        writer(circuit, f)


@contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` on success."""
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                               prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
