"""Where the nodes of a circuit read from a file were written: file, line and id in the file.

Readers attach a :class:`SourceMap` to the circuits they build (``Circuit.source``), so that
the verifier can name a broken node as the file does: ``c.jpc:7: node 12: not smooth ...``
rather than by its position in the IR, which matches nothing in a ``.jpc`` or ``.psdd``. The
line's text, shown under the message, is read again from the file only when an error is
reported.

Example::

    c = pccc.load("model.psdd")
    c.source.where(5)        # 'model.psdd:9: node 40 (element 2)'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the arrays of a map: (line of each node, its id in the file, its element or -1)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class SourceMap:
    """The source of each node of one circuit (node ``i`` of ``Circuit.nodes``)."""

    file: str
    """the file name, as errors print it"""
    make: Callable[[], Arrays]
    """returns ``(line, id, element)`` per node: the 1-based line, the node's id in the file,
    and for the products a ``.psdd`` decision line makes, the element (else -1); called once,
    at the first use (a fast reader need not count lines unless an error is reported)"""
    prefix: str = ""
    """written before an id (``%`` in ``.pcir`` files)"""
    text: str | bytes | None = None
    """the file's content, when it was not read from a file (else it is read again on use)"""
    _arrays: Arrays | None = field(default=None, repr=False)

    @classmethod
    def of(cls, file: str, lines: Sequence[int] | np.ndarray, ids: Sequence[int] | np.ndarray,
           elems: Sequence[int] | np.ndarray | None = None, **kwargs: object) -> SourceMap:
        """A map from ready arrays."""
        arrays = (np.asarray(lines, np.int64), np.asarray(ids, np.int64),
                  np.full(len(lines), -1, np.int64) if elems is None
                  else np.asarray(elems, np.int64))
        return cls(file, lambda: arrays, **kwargs)  # type: ignore[arg-type]

    def arrays(self) -> Arrays:
        if self._arrays is None:
            self._arrays = self.make()
        return self._arrays

    def line(self, node: int) -> int:
        """The 1-based line of ``node`` (0 when unknown)."""
        lines = self.arrays()[0]
        return int(lines[node]) if 0 <= node < len(lines) else 0

    def label(self, node: int) -> str:
        """``node``'s id as the file writes it (with its element for a PSDD product)."""
        _, ids, elems = self.arrays()
        if not 0 <= node < len(ids):
            return f"%{node}"
        text = f"{self.prefix}{int(ids[node])}"
        return text if elems[node] < 0 else f"{text} (element {int(elems[node])})"

    def where(self, node: int) -> str:
        """``file:line: node <id>``."""
        line = self.line(node)
        at = f"{self.file}:{line}" if line else self.file
        return f"{at}: node {self.label(node)}"

    def ref(self, node: int) -> str:
        """``node <id> (line L)``, to name another node in a message."""
        return f"node {self.label(node)} (line {self.line(node)})"

    def source_line(self, node: int) -> str:
        """The text of ``node``'s line (one line, shortened), or ``""``."""
        line = self.line(node)
        if line < 1:
            return ""
        try:
            data = self.text if self.text is not None else _read(self.file)
        except (OSError, ValueError):
            return ""
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        start = 0
        for _ in range(line - 1):
            start = data.find(b"\n", start) + 1
            if start == 0:
                return ""
        end = data.find(b"\n", start)
        text = data[start:end if end >= 0 else len(data)].decode("utf-8", "replace").strip()
        return text if len(text) <= 120 else text[:117] + "..."


def _read(path: str) -> bytes:
    import gzip

    data = Path(path).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
