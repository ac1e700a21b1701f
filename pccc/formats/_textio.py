"""Reading circuit text files: gzip with byte offsets, pickle refusal, located token errors.

Every reader of a line-oriented circuit format (``.jpc``, ``.psdd``, ``.spn``) starts here:
:func:`read_bytes` returns the decompressed bytes or raises :class:`ParseError`, and
:class:`LineSource` hands out ``(line number, tokens)`` pairs whose conversions report
``file:line:col`` on failure.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from pccc.ir.errors import ParseError
from pccc.ir.limits import MAX_VARS

_GZIP_MAGIC = b"\x1f\x8b"
_PICKLE_PROTO = 0x80
_CHUNK = 1 << 20
#: a decimal number in ASCII (what Python, Java and Julia print for a float; no ``_``)
_NUMBER = re.compile(rb"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _gunzip(data: bytes, name: str) -> bytes:
    """Decompress every gzip member of ``data``; errors name the byte offset."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        start = pos
        while not d.eof:
            if pos >= len(data):
                raise ParseError(f"byte {len(data)}: gzip data truncated (member starting at byte "
                                 f"{start} has no end)", file=name)
            chunk = data[pos:pos + _CHUNK]
            try:
                out.append(d.decompress(chunk))
            except zlib.error as e:
                raise ParseError(f"byte {pos}..{pos + len(chunk)}: corrupt gzip data ({e})",
                                 file=name) from None
            pos += len(chunk) - len(d.unused_data)
        # trailing zero padding after the last member is tolerated, as gzip(1) does
        if not data[pos:].strip(b"\x00"):
            break
        if data[pos:pos + 2] != _GZIP_MAGIC:
            raise ParseError(f"byte {pos}: trailing garbage after gzip data", file=name)
    return b"".join(out)


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it starts with the gzip magic number.

    Raises:
        ParseError: for an empty file, a Python pickle, or broken gzip data.
    """
    name = str(path)
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, name)
    if not data or data.isspace():  # (strip() would copy a large file)
        raise ParseError("empty file", file=name, line=1, col=1)
    if data[0] == _PICKLE_PROTO:
        raise ParseError("this is a Python pickle (PyJuice saves .jpc files with pickle), not a "
                         "Juice text circuit; pccc never unpickles files: export the circuit in "
                         "the Juice text format instead", file=name, line=1, col=1)
    return data


class LineSource:
    """The lines of a text file, with located conversions of their tokens.

    Args:
        data: the file content.
        name: the file name used in error messages.
        comment: lines whose first byte is this prefix are skipped (None: no comments).
    """

    def __init__(self, data: bytes, name: str, comment: bytes | None = b"c"):
        self.name = name
        self.raw = data.split(b"\n")
        self.comment = comment
        self.lineno = 0
        self.tokens: list[bytes] = []

    def __iter__(self) -> Iterator[list[bytes]]:
        comment = self.comment
        for i, line in enumerate(self.raw):
            if comment is not None and line.startswith(comment):
                continue
            toks = line.split()
            if not toks:
                continue
            self.lineno = i + 1
            self.tokens = toks
            yield toks

    def col(self, k: int) -> int:
        """1-based column of token ``k`` of the current line (one past the end for a missing
        token)."""
        line = self.raw[self.lineno - 1]
        pos = 0
        for j in range(k + 1):
            while pos < len(line) and line[pos:pos + 1].isspace():
                pos += 1
            if j == k:
                break
            while pos < len(line) and not line[pos:pos + 1].isspace():
                pos += 1
        return pos + 1

    def fail(self, message: str, k: int = 0, *, line: int | None = None) -> ParseError:
        """A ParseError at token ``k`` of the current line (or at the start of ``line``)."""
        if line is not None:
            return ParseError(message, file=self.name, line=line, col=1)
        return ParseError(message, file=self.name, line=self.lineno, col=self.col(k))

    def text(self, k: int) -> str:
        return self.tokens[k].decode("utf-8", "replace")

    def integer(self, k: int, what: str, lo: int | None = 0, hi: int | None = None) -> int:
        """Token ``k`` as an integer ``>= lo`` (and ``<= hi``): ASCII digits, with a leading
        ``-`` where ``lo`` allows it (no ``+``, no ``_`` between digits)."""
        if k >= len(self.tokens):
            raise self.fail(f"missing {what}", k)
        tok = self.tokens[k]
        digits = tok[1:] if tok[:1] == b"-" else tok
        if not (digits.isdigit() and len(digits) <= 18):  # (bytes: ASCII digits only)
            if digits.isdigit():
                raise self.fail(f"{what}: {self.text(k)} is out of range", k)
            raise self.fail(f"{what}: expected an integer, got {self.text(k)!r}", k)
        v = int(tok)
        if lo is not None and v < lo:
            raise self.fail(f"{what}: {v} is below {lo}", k)
        if hi is not None and v > hi:
            raise self.fail(f"{what}: {v} is above the limit {hi}", k)
        return v

    def variable(self, k: int, what: str = "variable") -> int:
        """Token ``k``, a 1-based variable of at most :data:`~pccc.ir.limits.MAX_VARS`, as
        the 0-based variable."""
        return self.integer(k, what, lo=1, hi=MAX_VARS) - 1

    def literal(self, k: int) -> tuple[int, int]:
        """Token ``k``, a literal ``+-v`` (``v`` 1-based, at most ``MAX_VARS``), as
        ``(0-based variable, value)``: value 1 for ``v``, 0 for ``-v``."""
        lit = self.integer(k, "literal", lo=None)
        if abs(lit) > MAX_VARS:
            raise self.fail(f"literal {lit}: variable {abs(lit)} is above the limit {MAX_VARS}",
                            k)
        if lit == 0:
            raise self.fail("literal 0 (variables are 1-based)", k)
        return abs(lit) - 1, int(lit > 0)

    def number(self, k: int, what: str) -> float:
        """Token ``k`` as a finite float (Java/Julia spellings like ``-8.76E-4`` included)."""
        if k >= len(self.tokens):
            raise self.fail(f"missing {what}", k)
        tok = self.tokens[k]
        if _NUMBER.fullmatch(tok) is None:
            if tok.lower().lstrip(b"+-") in (b"nan", b"inf", b"infinity"):
                raise self.fail(f"{what}: {self.text(k)} is not finite", k)
            raise self.fail(f"{what}: expected a number, got {self.text(k)!r}", k)
        v = float(tok)
        if not math.isfinite(v):
            raise self.fail(f"{what}: {self.text(k)} is not finite", k)
        return v

    def logprob(self, k: int, what: str) -> float:
        """A finite log-probability: ``<= 0`` up to rounding (values in (0, 1e-9] read as 0)."""
        v = self.number(k, what)
        if v > 1e-9:
            raise self.fail(f"{what}: {self.text(k)} is a log-probability above 0", k)
        return min(v, 0.0)

    def count(self, n: int) -> None:
        """Require exactly ``n`` tokens on the current line."""
        if len(self.tokens) < n:
            raise self.fail(f"{self.text(0)} line: expected {n} fields, got {len(self.tokens)}",
                            len(self.tokens))
        if len(self.tokens) > n:
            raise self.fail(f"{self.text(0)} line: expected {n} fields, got {len(self.tokens)}",
                            n)
