"""Pictures to files: DOT text, or SVG, PNG and PDF drawn by Graphviz or by matplotlib.

The format follows the extension of the output (:data:`FORMATS`). DOT text needs nothing.
The other formats are drawn by the engine asked for:

- ``auto`` (the default): Graphviz's ``dot`` program when it is on the ``PATH``, else
  networkx and matplotlib (:mod:`pccc.viz.mpl`);
- ``dot``: Graphviz only; ``matplotlib``: networkx and matplotlib only.

An engine that cannot draw, an unknown extension or a failing ``dot`` raise a
:class:`~pccc.ir.errors.PcccError` that says what to do instead. Files are written
atomically (:func:`pccc.files.atomic_write`): a failed drawing leaves no file.

Example::

    write_picture(picture, "circuit.svg")
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pccc.ir.errors import PcccError
from pccc.viz.dot import dot_text
from pccc.viz.model import Picture

#: the formats written, by extension (without the dot)
FORMATS = ("dot", "svg", "png", "pdf")
#: the engines that draw the formats other than DOT
ENGINES = ("auto", "dot", "matplotlib")
#: seconds the ``dot`` program may take
DOT_TIMEOUT = 600.0


def format_of(path: str | os.PathLike[str]) -> str:
    """The format of an output path, from its extension.

    Raises:
        PcccError: an extension not in :data:`FORMATS`.
    """
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        known = ", ".join(f".{f}" for f in FORMATS)
        what = f"a .{ext} file" if ext else "a file without an extension"
        raise PcccError(f"{path}: cannot draw {what} (the extension picks the format: "
                        f"{known})")
    return ext


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise PcccError(f"unknown drawing engine {engine!r} (one of {', '.join(ENGINES)})")


def choose_engine(engine: str = "auto") -> str:
    """``dot`` or ``matplotlib``: the engine that draws for ``engine``, checked to work.

    Raises:
        PcccError: the engine cannot draw here (no ``dot`` program; matplotlib or networkx
            not importable).
    """
    _check_engine(engine)
    if engine in ("auto", "dot") and shutil.which("dot"):
        return "dot"
    if engine == "dot":
        raise PcccError("the Graphviz 'dot' program is not on the PATH: install Graphviz, "
                        "draw with the matplotlib engine, or write a .dot file")
    try:
        import matplotlib  # noqa: F401
        import networkx  # noqa: F401
    except ImportError as e:
        why = "no Graphviz 'dot' program on the PATH, and " if engine == "auto" else ""
        raise PcccError(f"cannot draw: {why}{e.name or 'matplotlib'} does not import; "
                        "write a .dot file instead") from None
    return "matplotlib"


def picture_bytes(picture: Picture, fmt: str, engine: str = "auto") -> bytes:
    """The file of ``picture`` in format ``fmt`` (a :data:`FORMATS` entry)."""
    if fmt == "dot":
        _check_engine(engine)
        return dot_text(picture).encode()
    if choose_engine(engine) == "dot":
        return run_dot(dot_text(picture), fmt)
    from pccc.viz.mpl import draw_bytes

    return draw_bytes(picture, fmt)


def run_dot(text: str, fmt: str) -> bytes:
    """Graphviz's drawing of DOT ``text`` in format ``fmt``.

    Raises:
        PcccError: ``dot`` failed or took longer than :data:`DOT_TIMEOUT` seconds.
    """
    exe = shutil.which("dot") or "dot"
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=text.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PcccError(f"dot -T{fmt}: {e}") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise PcccError(f"dot -T{fmt} failed (status {done.returncode})"
                        f"{': ' + err[0] if err else ''}")
    return done.stdout


def write_picture(picture: Picture, path: str | os.PathLike[str], engine: str = "auto") -> None:
    """Write ``picture`` to ``path`` in the format of its extension (see the module
    docstring), atomically."""
    from pccc.files import atomic_write

    data = picture_bytes(picture, format_of(path), engine)
    with atomic_write(path) as f:
        f.write(data)
