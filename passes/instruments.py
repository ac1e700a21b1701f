"""Pass instruments: small objects with hooks the pass manager calls around every pass.

- :class:`PrintAfter`: print the IR after every pass (``--print-after-all``) or after the named
  ones (``--print-after NAME``), headed by a comment line so that a log can be cut apart and
  each piece parsed back.
- :class:`DumpDir`: write ``000_input.pcir``, ``001_canonicalize.pcir``, ... to a folder
  without copies (sidecars shared by content, lowered levels naming their source's file); it
  clears only files it wrote (it leaves a ``.pccc-dump`` marker) and refuses a folder holding
  anything else.
- :class:`PrintStats`: the summary of the IR after every pass (``--stats``).
- :class:`TimePasses`: wall time of every pass, reported as a table.

Verification after every pass is built into :func:`pccc.passes.manager.run_pipeline`.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pccc.ir.errors import PassError

_DUMP_RE = re.compile(r"\d{3}_[a-z0-9_\-]+\.(pcir|npz)\Z")
MARKER = ".pccc-dump"


class Instrument:
    """Base class: override the hooks you need."""

    def run_start(self, ir: Any) -> None:
        """Called once with the input IR."""

    def before_pass(self, index: int, name: str, ir: Any) -> None:
        """Called before pass number ``index`` (1-based) runs."""

    def after_pass(self, index: int, name: str, ir: Any) -> None:
        """Called with the output of pass number ``index``."""

    def run_end(self, ir: Any) -> None:
        """Called once with the final IR."""


def ir_text(ir: Any, elide_above: int | None) -> str:
    """The ``.pcir`` text of an IR value of any level."""
    from pccc.ir.printer import to_text

    return to_text(ir, elide_above=elide_above)


class PrintAfter(Instrument):
    """Print the IR after every pass, or after the passes named in ``names``.

    An L1 or L2 value names its source circuit by digest, with a note on where it was printed
    (or that it is the input), instead of printing it again; ``embed_source`` prints it too.

    Args:
        names: pass names to print after (None: all).
        stream: where to print (default stdout).
        elide_above: arrays larger than this print as their shape only.
        embed_source: print the source circuit of L1 and L2 values in full.
    """

    def __init__(self, names: set[str] | None = None, stream: TextIO | None = None,
                 elide_above: int | None = 64, embed_source: bool = False):
        self.names = names
        self.stream = stream
        self.elide_above = elide_above
        self.embed_source = embed_source
        self.seen: list[tuple[Any, str]] = []
        """L0 circuits met so far, with where the reader finds them"""

    def run_start(self, ir: Any) -> None:
        if getattr(ir, "level", None) == "L0":
            self.seen.append((ir, "the input circuit"))

    def _text(self, ir: Any) -> str:
        if ir.level not in ("L1", "L2") or self.embed_source:
            return ir_text(ir, self.elide_above)
        from pccc.ir.digest import circuit_digest
        from pccc.ir.parse_lowered import source_of
        from pccc.ir.print_lowered import SourceRef
        from pccc.ir.printer import to_text

        digest = circuit_digest(source_of(ir))
        note = next((n for c, n in reversed(self.seen) if circuit_digest(c) == digest),
                    "not printed here")
        return to_text(ir, elide_above=self.elide_above, source=SourceRef(note=note))

    def after_pass(self, index: int, name: str, ir: Any) -> None:
        if self.names is not None and name not in self.names:
            return
        out = self.stream or sys.stdout
        out.write(f"// ----- IR dump after {name} (pass {index}) ----- //\n")
        out.write(self._text(ir))
        out.write("\n")
        out.flush()
        if ir.level == "L0":
            self.seen.append((ir, f"the L0 dump after {name} (pass {index}) above"))


class DumpDir(Instrument):
    """Write the input and the output of every pass to numbered ``.pcir`` files, without
    copies: sidecar arrays are shared by content and L1 and L2 files name their source
    circuit's file (:class:`pccc.passes.dumps.DumpWriter`).

    Raises:
        PassError: the folder holds files this instrument did not write.
    """

    def __init__(self, folder: str | Path, *, embed_source: bool = False):
        from pccc.passes.dumps import DumpWriter

        self.folder = Path(folder)
        self.files: list[Path] = []
        self._prepare()
        self.writer = DumpWriter(self.folder, embed=embed_source)

    def _prepare(self) -> None:
        d = self.folder
        if d.exists() and not d.is_dir():
            raise PassError(f"--dump-dir {d}: not a folder")
        if d.is_dir():
            entries = [p for p in d.iterdir() if p.name != MARKER]
            foreign = [p.name for p in entries if not _DUMP_RE.match(p.name) or p.is_dir()]
            if entries and (foreign or not (d / MARKER).exists()):
                shown = ", ".join(sorted(foreign or [p.name for p in entries])[:3])
                raise PassError(f"--dump-dir {d}: refusing to clear a folder with files pccc "
                                f"did not write ({shown}); pick an empty or new folder")
            for p in entries:
                p.unlink()
        d.mkdir(parents=True, exist_ok=True)
        (d / MARKER).write_text("pass dumps written by pccc; the folder is cleared on reuse\n")

    def _write(self, index: int, name: str, ir: Any) -> None:
        self.files += self.writer.write(ir, f"{index:03d}_{name.replace('-', '_')}")

    def run_start(self, ir: Any) -> None:
        self._write(0, "input", ir)

    def after_pass(self, index: int, name: str, ir: Any) -> None:
        self._write(index, name, ir)


class PrintStats(Instrument):
    """Print the summary of the input and of every pass's output (:mod:`pccc.ir.summary`:
    sizes, tiles, layers, partitions, padding, bytes), headed like :class:`PrintAfter`'s
    dumps (``--stats``).

    Args:
        stream: where to print (default stderr).
    """

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def _print(self, title: str, ir: Any) -> None:
        from pccc.ir.summary import summary_lines

        out = self.stream or sys.stderr
        out.write(f"// ----- stats {title} ----- //\n")
        out.write("\n".join(summary_lines(ir)) + "\n")
        out.flush()

    def run_start(self, ir: Any) -> None:
        self._print("of the input", ir)

    def after_pass(self, index: int, name: str, ir: Any) -> None:
        self._print(f"after {name} (pass {index})", ir)


class TimePasses(Instrument):
    """Time every pass; :meth:`report` formats the table (``--time-passes``)."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self._t0 = 0.0

    def before_pass(self, index: int, name: str, ir: Any) -> None:
        self._t0 = time.perf_counter()

    def after_pass(self, index: int, name: str, ir: Any) -> None:
        self.times.append((name, time.perf_counter() - self._t0))

    def report(self) -> str:
        total = sum(t for _, t in self.times) or 1e-12
        lines = ["===== pass execution timing =====", f"{'wall s':>9} {'%':>6}  pass"]
        for name, t in self.times:
            lines.append(f"{t:9.4f} {100 * t / total:6.1f}  {name}")
        lines.append(f"{total:9.4f} {100.0:6.1f}  total")
        return "\n".join(lines)
