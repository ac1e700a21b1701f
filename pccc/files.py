"""Output files: atomic writes that keep modes and links, and outputs that are not inputs.

:func:`atomic_write` writes to a hidden temporary file beside the target
(``.<name>.<8 random characters>.tmp``) and renames it over the target only when the writer
finished, so a failed or interrupted write leaves the target as it was. The written file

- has the mode of the file it replaces, or, for a new file, ``0666`` less the umask (as
  ``open`` would create it);
- is written through a symbolic link: the link stays, its target is replaced;
- keeps its hard links: a target with other links is rewritten in place, from the finished
  temporary file (so a failing writer still leaves it as it was; only a failure while
  copying, a full disk say, can leave it part written).

A temporary file holds an exclusive ``flock`` while it is written. Temporary files of this
naming that no process holds and that are older than a second are left-overs of a killed
writer; the next write to the same path removes them.

:func:`atomic_writes` writes several files that belong together (a ``.pcir`` file and its
sidecar): all or none. :func:`check_distinct` refuses an output that is one of the inputs.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pccc.ir.errors import PcccError

try:
    import fcntl
except ImportError:  # (not on Windows: no lock, no clean-up of left-overs there)
    fcntl = None  # type: ignore[assignment]

#: a temporary file older than this (seconds) that no writer holds is a left-over
STALE_AFTER = 1.0


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # (where /proc does not say: read it by setting it back at once)
    os.umask(mask)
    return mask


def target_of(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` replaces: ``path``, or where its symbolic link points."""
    p = Path(path)
    if not p.is_symlink():
        return p
    try:
        return p.resolve()
    except (RuntimeError, OSError) as e:  # (a loop of links)
        raise PcccError(f"{p}: cannot follow the symbolic link ({e})") from None


def check_output(path: str | os.PathLike[str], what: str = "") -> Path:
    """Refuse an output path whose folder is missing or that is a folder, before any work.

    Returns:
        the file a write to ``path`` replaces (see :func:`target_of`).
    """
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    target = target_of(p)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise PcccError(f"{label}: is a folder")
    if not folder.is_dir():
        raise PcccError(f"{label}: folder {folder} does not exist")
    return target


def _stale(folder: Path, name: str) -> Iterator[Path]:
    pattern = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for e in entries:
        if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False):
            try:
                if now - e.stat(follow_symlinks=False).st_mtime > STALE_AFTER:
                    yield Path(e.path)
            except OSError:
                continue


def clean_stale(target: Path) -> None:
    """Remove left-over temporary files of writes to ``target`` (none a live writer holds)."""
    if fcntl is None:
        return
    for tmp in _stale(target.parent if str(target.parent) else Path("."), target.name):
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(tmp)
        except OSError:
            pass  # (held by a writer, or gone already)
        finally:
            os.close(fd)


class _Pending:
    """A temporary file beside ``target``, committed by :meth:`commit`."""

    def __init__(self, target: Path):
        self.target = target
        folder = target.parent if str(target.parent) else Path(".")
        clean_stale(target)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as e:
            raise PcccError(f"{target}: cannot write ({e.strerror or e})") from None
        self.tmp = Path(tmp)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Give the finished file its mode and put it in place."""
        self.file.flush()
        try:
            st = os.stat(self.target)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise PcccError(f"{self.target}: cannot write ({e.strerror or e})") from None
        try:
            if st is not None and st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                self._copy_in_place()
                return
            mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
            os.fchmod(self.file.fileno(), mode)
            self.file.close()
            os.replace(self.tmp, self.target)
        except IsADirectoryError:
            raise PcccError(f"{self.target}: is a folder") from None
        except OSError as e:
            raise PcccError(f"{self.target}: cannot write ({e.strerror or e})") from None

    def _copy_in_place(self) -> None:
        """Rewrite a file with other hard links in place, so that every link sees it."""
        self.file.close()
        with open(self.tmp, "rb") as src, open(self.target, "r+b") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.truncate()
        self.tmp.unlink()

    def discard(self) -> None:
        self.file.close()
        try:
            self.tmp.unlink()
        except OSError:
            pass


@contextmanager
def atomic_writes(*paths: str | os.PathLike[str]) -> Iterator[list[IO[bytes]]]:
    """Write several files, all or none (see the module docstring): yields one binary file
    per path; they are put in place, in order, only when the block ends without error."""
    targets = [check_output(p) for p in paths]
    pending: list[_Pending] = []
    try:
        for t in targets:
            pending.append(_Pending(t))
        yield [q.file for q in pending]
        for q in pending:
            q.commit()
    finally:
        for q in pending:
            q.discard()  # (nothing is left of one put in place)


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Write one file atomically (see the module docstring); yields a binary file."""
    with atomic_writes(path) as (f,):
        yield f


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(target_of(a)) == os.path.abspath(target_of(b))


def check_distinct(outputs: Mapping[str, str | os.PathLike[str] | None],
                   inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Refuse an output that is one of the inputs, or another output (the same file under
    any name: links and symbolic links included).

    Args:
        outputs: option -> path written (None: not given).
        inputs: option -> path read (None: not given).

    Raises:
        PcccError: naming both options.
    """
    outs = [(k, Path(v)) for k, v in outputs.items() if v is not None]
    ins = [(k, Path(v)) for k, v in inputs.items() if v is not None]
    for i, (ko, po) in enumerate(outs):
        for ki, pi in ins + outs[:i]:
            if _same(po, pi):
                raise PcccError(f"{ko} {po}: the same file as {ki} {pi}; writing it would "
                                "destroy what is read (pick another output)")


__all__ = ["STALE_AFTER", "atomic_write", "atomic_writes", "check_distinct", "check_output",
           "clean_stale", "target_of"]
