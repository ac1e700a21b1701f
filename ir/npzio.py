"""Reading numeric arrays from ``.npz`` and ``.npy`` files within checks, never pickle.

The sidecars of ``.pcir`` files and the ``.npy``/``.npz`` data files are read here. An array's
``.npy`` header is read and checked before its data: the dtype must be numeric (booleans,
integers, floats; no objects, strings or records) and the data exactly as long as the header's
shape says, so that nothing is allocated beyond the bytes present. A zip archive is opened
once, however many of its arrays are read. Every failure (a missing, empty, truncated or
corrupt file, a bad CRC, an unknown array) is an :class:`NpyError` whose message names what is
wrong; callers add the place (``file:line:col`` of the sidecar's name, or the data file).

Example::

    with NpzReader("c.npz") as z:
        w = z.array("w3", shape=(4, 8))
"""

from __future__ import annotations

import io
import math
import mmap
import os
import zipfile
import zlib
from typing import IO, Any

import numpy as np

#: the dtype kinds an array may have: bool, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"
#: deflate cannot expand data much more than 1032 times
_MAX_RATIO = 1100


class NpyError(ValueError):
    """An array file or member that cannot be read; the message says why."""


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version in ((2, 0), (3, 0)):
            return np.lib.format.read_array_header_2_0(f)
        raise ValueError(f"format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError) as e:
        raise NpyError(f"not a .npy array ({e})") from None


def read_npy(f: IO[bytes], size: int) -> np.ndarray:
    """The array in the ``size`` bytes of ``.npy`` data at the start of ``f``.

    Raises:
        NpyError: a bad header, a dtype that is not numeric, or data of the wrong length.
    """
    shape, fortran, dtype = _header(f)
    if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        raise NpyError(f"arrays of {dtype} are not read (numbers only: no objects, strings or "
                       "records)")
    need = math.prod(shape) * dtype.itemsize
    have = size - f.tell()
    if need != have:
        raise NpyError(f"its header announces {shape} of {dtype} ({need} bytes) but "
                       f"{have} bytes follow (truncated or corrupt)")
    data = f.read(need)
    if len(data) != need:
        raise NpyError(f"truncated: {len(data)} of {need} bytes")
    arr = np.frombuffer(data, dtype=dtype)
    if fortran:
        return arr.reshape(shape[::-1]).T
    return arr.reshape(shape)


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """The array of a ``.npy`` file (see :func:`read_npy`)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return read_npy(f, size)


class NpzReader:
    """An ``.npz`` archive, opened once; :meth:`array` reads one member after checking it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise NpyError(f"not a .npz archive, or truncated ({e})") from None
        except (OSError, EOFError, ValueError) as e:
            raise NpyError(f"cannot read ({e})") from None
        self.files = [n[:-4] for n in self._zip.namelist() if n.endswith(".npy")]
        self._map: mmap.mmap | None = None

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._map = None  # (arrays made by mapped() keep the mapping alive)

    def mapped(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Array ``key`` as a read-only view of the file: its header is checked as by
        :meth:`array`, its data is read from the disk only where it is used (and its CRC not
        checked). A compressed member, or an archive that cannot be mapped, is read by
        :meth:`array`.

        Raises:
            NpyError: no such array, a corrupt member, or a header that does not fit.
        """
        try:
            info = self._zip.getinfo(f"{key}.npy")
        except KeyError:
            raise NpyError(f"no array {key!r}") from None
        if info.compress_type != zipfile.ZIP_STORED:
            return self.array(key, shape)
        try:
            if self._map is None:
                with open(self.path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return self.array(key, shape)
        mm = self._map
        local = mm[info.header_offset: info.header_offset + 30]
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise NpyError(f"array {key!r}: corrupt member (no local header)")
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + \
            int.from_bytes(local[28:30], "little")
        mm.seek(start)
        head_shape, fortran, dtype = _header(mm)  # type: ignore[arg-type]
        data_at = mm.tell()
        if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
            raise NpyError(f"array {key!r}: arrays of {dtype} are not read (numbers only)")
        if shape is not None and tuple(head_shape) != tuple(shape):
            raise NpyError(f"array {key!r} has shape {tuple(head_shape)}, expected "
                           f"{tuple(shape)}")
        count = math.prod(head_shape)
        if info.file_size - (data_at - start) != count * dtype.itemsize or \
                data_at + count * dtype.itemsize > len(mm):
            raise NpyError(f"array {key!r}: its header announces {tuple(head_shape)} of "
                           f"{dtype}, not the bytes stored (corrupt)")
        arr = np.frombuffer(mm, dtype=dtype, count=count, offset=data_at)
        return arr.reshape(head_shape[::-1]).T if fortran else arr.reshape(head_shape)

    def array(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Array ``key``; with ``shape``, refused unless its header announces that shape
        (checked before its data is read).

        Raises:
            NpyError: no such array, a corrupt member, or a header that does not fit.
        """
        name = f"{key}.npy"
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise NpyError(f"no array {key!r}") from None
        if info.file_size > _MAX_RATIO * info.compress_size + (1 << 16):
            raise NpyError(f"array {key!r}: claims {info.file_size} bytes from "
                           f"{info.compress_size} compressed (corrupt)")
        try:
            with self._zip.open(info) as f:
                raw = io.BytesIO(f.read(min(info.file_size, 1 << 16)))
                head_shape, _, dtype = _header(raw)
                if shape is not None and tuple(head_shape) != tuple(shape):
                    raise NpyError(f"array {key!r} has shape {tuple(head_shape)}, expected "
                                   f"{tuple(shape)}")
                if info.file_size - raw.tell() != math.prod(head_shape) * dtype.itemsize:
                    raise NpyError(f"array {key!r}: its header announces {tuple(head_shape)} "
                                   f"of {dtype}, not the {info.file_size - raw.tell()} bytes "
                                   "stored (corrupt)")
                data = raw.getvalue() + f.read()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError) as e:
            raise NpyError(f"array {key!r}: corrupt member ({e})") from None
        try:
            return read_npy(io.BytesIO(data), len(data))
        except NpyError as e:
            raise NpyError(f"array {key!r}: {e}") from None
