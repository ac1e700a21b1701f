"""The ``.pcir`` text format (see ``docs/ir.md``): reader and writer registered by extension.

The writer puts every parameter inline (exact floats), so a ``.pcir`` file stands alone;
:func:`save_pcir` can instead write the parameters to a sidecar ``<stem>.npz`` next to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np

from pccc.files import atomic_write, atomic_writes
from pccc.formats import register_reader, register_writer
from pccc.ir.circuit import Circuit
from pccc.ir.errors import ParseError
from pccc.ir.parser import parse_circuit
from pccc.ir.printer import to_text, to_text_npz


def read_pcir(path: Path, *, allow_elided: bool = False) -> Circuit:
    """Read an L0 circuit from a ``.pcir`` file.

    Raises:
        ParseError: ``file:line:col: message`` for malformed text.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"byte {e.start}: not UTF-8 text", file=str(path)) from None
    return parse_circuit(text, file=str(path), base_dir=Path(path).parent,
                         allow_elided=allow_elided)


def write_pcir(circuit: Circuit, f: IO[bytes]) -> None:
    """Write ``circuit`` as ``.pcir`` text with every parameter inline."""
    f.write(to_text(circuit).encode("utf-8"))


def sidecar_name(path: Path) -> str:
    """The sidecar file name for ``path``: ``c.pcir`` -> ``c.npz``."""
    name = path.name
    stem = name[: -len(".pcir")] if name.lower().endswith(".pcir") else name
    return f"{stem}.npz"


def save_pcir(circuit: Circuit, path: str | Path, *, sidecar: bool = False) -> None:
    """Write a ``.pcir`` file atomically, parameters inline or in a sidecar ``.npz`` (never
    elided: a file holds every value).

    Args:
        circuit: the circuit to write.
        path: the ``.pcir`` file.
        sidecar: write the parameters to ``<stem>.npz`` beside ``path``.
    """
    p = Path(path)
    if sidecar:
        name = sidecar_name(p)
        text, arrays = to_text_npz(circuit, name)
        with atomic_writes(p.parent / name, p) as (g, f):  # (both files or neither)
            np.savez(g, **arrays)  # type: ignore[arg-type]
            f.write(text.encode("utf-8"))
        return
    with atomic_write(p) as f:
        f.write(to_text(circuit).encode("utf-8"))


register_reader(".pcir", read_pcir)
register_writer(".pcir", write_pcir)
