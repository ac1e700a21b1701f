"""The zip archive of a ``.pccm`` file, read within limits.

Every member is named, sized and checksummed before it is used: the archive holds
``manifest.json``, ``checksums.json`` (the SHA-256 of every other member) and ``.npy`` arrays,
each member once, stored or deflated, unencrypted. The manifest is read only up to
:data:`MAX_MANIFEST_BYTES` and nested at most :data:`MAX_DEPTH` deep. An array member is
parsed from its ``.npy`` header (never pickle): its dtype must be one pccc writes and its data
exactly as long as its shape says, so that nothing is allocated beyond the bytes present.

Every refusal is an :class:`ArtifactError` naming the file and the member.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir.errors import PcccError

MANIFEST = "manifest.json"
CHECKSUMS = "checksums.json"
#: the most members an archive may hold
MAX_MEMBERS = 1 << 20
#: the largest manifest (and checksum list) read, in bytes
MAX_MANIFEST_BYTES = 1 << 28
#: the deepest nesting of lists and objects in the manifest
MAX_DEPTH = 64
#: the dtypes an array member may have (those pccc writes), little-endian
DTYPES = frozenset({"<i8", "<i4", "<f8", "<f4", "|b1"})
#: deflate cannot expand data more than about 1032 times
_MAX_RATIO = 1100


class ArtifactError(PcccError):
    """A ``.pccm`` file that cannot be used; names the file and the member or field."""

    def __init__(self, path: Path | str, message: str, *, member: str | None = None,
                 field: str | None = None):
        self.path, self.member, self.field = str(path), member, field
        where = f"member {member}: " if member else f"manifest field {field}: " if field else ""
        super().__init__(f"{path}: {where}{message}")


class Archive:
    """An open ``.pccm`` zip archive whose members have been listed and checked.

    Example::

        with Archive(path) as ar:
            manifest = ar.manifest()
            ar.check_sums()
            arr = ar.array("plan.params.npy")
    """

    def __init__(self, path: Path):
        self.path = path
        self._sums: dict[str, str] | None = None
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ArtifactError(path, f"not a .pccm file, or truncated/corrupt ({e})") from None
        try:
            self._infos = self._list()
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def _list(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArtifactError(self.path, f"{len(infos)} members; the limit is {MAX_MEMBERS}")
        out: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if name in out:
                raise ArtifactError(self.path, "stored twice", member=name)
            if name not in (MANIFEST, CHECKSUMS) and not name.endswith(".npy"):
                raise ArtifactError(self.path, "not a member a .pccm file holds", member=name)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArtifactError(self.path, f"compression method {info.compress_type} "
                                    "(a .pccm member is stored or deflated)", member=name)
            if info.flag_bits & 1:
                raise ArtifactError(self.path, "encrypted", member=name)
            if info.file_size > _MAX_RATIO * info.compress_size + (1 << 20):
                raise ArtifactError(self.path, f"claims {info.file_size} bytes from "
                                    f"{info.compress_size} compressed (corrupt)", member=name)
            out[name] = info
        return out

    def _read(self, name: str, limit: int | None = None) -> bytes:
        info = self._infos.get(name)
        if info is None:
            raise ArtifactError(self.path, "missing (incomplete .pccm file)", member=name)
        if limit is not None and info.file_size > limit:
            raise ArtifactError(self.path, f"{info.file_size} bytes; the limit is {limit}",
                                member=name)
        try:
            data = self._zip.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError) as e:
            raise ArtifactError(self.path, f"corrupt ({e})", member=name) from None
        if self._sums is not None and name != CHECKSUMS:
            if hashlib.sha256(data).hexdigest() != self._sums.get(name):
                raise ArtifactError(self.path, "checksum mismatch (corrupt or edited)",
                                    member=name)
        return data

    def _json(self, name: str) -> Any:
        data = self._read(name, MAX_MANIFEST_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ArtifactError(self.path, f"not UTF-8 text (byte {e.start})",
                                member=name) from None
        depth = json_depth(text)
        if depth > MAX_DEPTH:
            raise ArtifactError(self.path, f"nested {depth} deep; the limit is {MAX_DEPTH}",
                                member=name)
        try:
            return json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            raise ArtifactError(self.path, f"corrupt JSON ({e})", member=name) from None

    def manifest(self) -> Any:
        """The manifest as JSON values (not yet checksummed: read the format version first)."""
        return self._json(MANIFEST)

    def check_sums(self) -> None:
        """Check the checksum list against the members and the manifest against its sum;
        every member read from now on is checked against its sum."""
        sums = self._json(CHECKSUMS)
        if not isinstance(sums, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
            raise ArtifactError(self.path, "not a table of member names and SHA-256 sums",
                                member=CHECKSUMS)
        listed, present = set(sums), set(self._infos) - {CHECKSUMS}
        if listed != present:
            odd = sorted(listed ^ present)[0]
            what = "listed but missing" if odd in listed else "present but not listed"
            raise ArtifactError(self.path, f"{what} in {CHECKSUMS}", member=odd)
        self._sums = sums
        self._read(MANIFEST)

    def array(self, name: str) -> np.ndarray:
        """The array of member ``name`` (read-only)."""
        return parse_npy(self._read(name), self.path, name)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a manifest holds")


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def json_depth(text: str) -> int:
    """How deep lists and objects nest in JSON ``text`` (brackets inside strings ignored)."""
    bare = _STRING.sub("", text).encode()
    b = np.frombuffer(bare, np.uint8)
    step = (np.isin(b, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(b, (ord("]"), ord("}"))))
    return int(np.cumsum(step).max()) if step.size else 0


def parse_npy(data: bytes, path: Path | str, name: str) -> np.ndarray:
    """An array from the bytes of a ``.npy`` file, checked against its header first."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as e:
        raise ArtifactError(path, f"not a .npy array ({e})", member=name) from None
    if dtype.str not in DTYPES:
        raise ArtifactError(path, f"dtype {dtype.str} (a .pccm array is one of "
                            f"{', '.join(sorted(DTYPES))})", member=name)
    count = 1
    for d in shape:
        count *= d
    offset = f.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ArtifactError(path, f"a {shape} array of {dtype.str} needs "
                            f"{count * dtype.itemsize} bytes, the member holds "
                            f"{len(data) - offset}", member=name)
    arr = np.frombuffer(data, dtype, count, offset).reshape(shape, order="F" if fortran else "C")
    return arr
