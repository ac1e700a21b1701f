"""Writing the IR of every pass to one folder without copies (``pccc opt --dump-dir``).

:class:`DumpWriter` writes each value to a ``.pcir`` file of the folder:

- an L0 circuit with its parameters inline when it is small, else in sidecar ``.npz`` files
  shared by content: a parameter array already saved under its key by an earlier dump is
  named in that dump's sidecar (``param @w3 f64[4, 8] = npz "000_input.npz"``), only new
  arrays go to the dump's own sidecar;
- an L1 or L2 value naming its source circuit by digest and the file that holds it: an earlier
  dump of the folder, or, when none holds it, a file written for it
  (``002_group_blocks_source.pcir``); with ``embed`` it holds its source instead;
- an L3 plan with its arrays inline when small, else in its own sidecar.

Example::

    w = DumpWriter(Path("dumps"))
    w.write(circuit, "000_input")
    w.write(blocked, "002_group_blocks")     # source sha256="..." path="000_input.pcir"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir.circuit import Circuit
from pccc.ir.digest import circuit_digest
from pccc.ir.printer import header, node_line, param_line, to_text

#: values with fewer array elements than this are written inline
INLINE_BELOW = 4096


class DumpWriter:
    """Writes IR values to ``folder``, sharing sidecar arrays and source circuits."""

    def __init__(self, folder: Path, *, embed: bool = False):
        self.folder = folder
        self.embed = embed
        self.saved: dict[str, list[tuple[np.ndarray, str]]] = {}
        """parameter key -> (array, sidecar file) of every array written so far"""
        self.circuits: list[tuple[Circuit, str]] = []
        """every L0 circuit written, with its file"""

    def write(self, ir: Any, stem: str) -> list[Path]:
        """Write ``ir`` to ``<stem>.pcir`` (and what it needs); returns the files written."""
        level = getattr(ir, "level", None)
        if level == "L0":
            return self._circuit(ir, stem)
        if level in ("L1", "L2") and not self.embed:
            return self._lowered(ir, stem)
        from pccc.ir.print_lowered import write_pcir_any

        path = self.folder / f"{stem}.pcir"
        write_pcir_any(ir, path, inline_below=INLINE_BELOW)
        side = path.with_suffix(".npz")
        return [path] + ([side] if side.exists() else [])

    def _lowered(self, ir: Any, stem: str) -> list[Path]:
        from pccc.ir.parse_lowered import source_of
        from pccc.ir.print_lowered import SourceRef

        src = source_of(ir)
        digest = circuit_digest(src)
        files: list[Path] = []
        name = next((f for c, f in self.circuits if circuit_digest(c) == digest), None)
        if name is None:
            files = self._circuit(src, f"{stem}_source")
            name = files[-1].name
        path = self.folder / f"{stem}.pcir"
        _write_text(path, to_text(ir, source=SourceRef(name)))
        return files + [path]

    def _circuit(self, c: Circuit, stem: str) -> list[Path]:
        path = self.folder / f"{stem}.pcir"
        self.circuits.append((c, path.name))
        if sum(int(a.size) for a in c.params.values()) < INLINE_BELOW:
            _write_text(path, to_text(c))
            return [path]
        own = f"{stem}.npz"
        new: dict[str, np.ndarray] = {}
        lines = [header("L0"), f"circuit num_vars={c.num_vars} root=%{c.root}"]
        lines += [node_line(c, i) for i in range(len(c.nodes))]
        for key, a in c.params.items():
            where = self._find(key, a)
            if where is None:
                new[key] = a
                self.saved.setdefault(key, []).append((a, own))
                where = own
            lines.append(param_line(key, a, "npz", where))
        files = []
        if new:
            from pccc.files import atomic_write

            with atomic_write(self.folder / own) as f:
                np.savez(f, **new)  # type: ignore[arg-type]
            files.append(self.folder / own)
        _write_text(path, "\n".join(lines) + "\n")
        return files + [path]

    def _find(self, key: str, a: np.ndarray) -> str | None:
        """The sidecar that holds this array under ``key`` already, if any."""
        for b, file in self.saved.get(key, ()):
            if b is a or (b.shape == a.shape and np.array_equal(b, a, equal_nan=True)
                          and np.array_equal(np.signbit(b), np.signbit(a))):
                return file
        return None


def _write_text(path: Path, text: str) -> None:
    from pccc.files import atomic_write

    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))

