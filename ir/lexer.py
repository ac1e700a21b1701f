"""A small tokenizer for the ``.pcir`` text of every IR level, with line and column tracking.

Tokens: ``IDENT`` (``group-blocks``, ``f64``, ``input``), ``INT``, ``FLOAT`` (as Python's
``repr`` writes them, plus ``inf``, ``-inf``, ``nan``), ``STRING`` (double-quoted, backslash
escapes), ``REF`` (``%12``), ``KEY`` (``@w3`` or ``@"any key"``), ``SYM`` (one of
``= [ ] ( ) { } , : ; < > * | ->``), ``NEWLINE`` and ``EOF``. Comments run from ``#`` or ``//``
to the end of the line. Values shared by the levels (numbers, strings, lists, references,
keys, ``key=value`` attributes) are parsed by :class:`TokenStream`; each level's parser adds
its own statements on top.

Example::

    ts = TokenStream("%3 = sum(%1, %2) n=1 param=@w3\\n", file="x.pcir")
    ref = ts.expect("REF").value          # Ref(3)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pccc.ir.errors import ParseError
from pccc.ir.limits import MAX_NESTING


@dataclass(frozen=True)
class Ref:
    """A node reference ``%id``."""

    id: int


@dataclass(frozen=True)
class Key:
    """A parameter-store key ``@name``."""

    name: str


@dataclass(frozen=True)
class Token:
    """One token with its 1-based position."""

    kind: str
    """token kind (``IDENT``, ``INT``, ``FLOAT``, ``STRING``, ``REF``, ``KEY``, ``SYM``, ...)"""
    text: str
    """the source text"""
    line: int
    """1-based line"""
    col: int
    """1-based column"""
    value: Any = None
    """the decoded value (int, float, str, :class:`Ref`, :class:`Key`)"""


_FLOAT = r"[-+]?(?:(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|inf|nan)(?![\w.])"
_TOKEN_RE = re.compile(
    r"(?P<NEWLINE>\n)"
    r"|(?P<SKIP>[ \t\r]+|\#[^\n]*|//[^\n]*)"
    rf"|(?P<FLOAT>{_FLOAT})"
    r"|(?P<INT>[-+]?\d+(?![\w.]))"
    r"|(?P<STRING>\"(?:[^\"\\\n]|\\.)*\")"
    r"|(?P<REF>%\d+)"
    r"|(?P<KEY>@(?:[A-Za-z_][\w.\-]*|\"(?:[^\"\\\n]|\\.)*\"))"
    r"|(?P<IDENT>[A-Za-z_][\w.\-]*)"
    r"|(?P<SYM>->|[=\[\](){},:;<>*|])"
    r"|(?P<ERROR>.)",
    re.ASCII,  # digits and names are ASCII: no Unicode digits in ids and numbers
)

#: identifiers that ``@name`` and attribute keys may use without quotes
BARE_RE = re.compile(r"[A-Za-z_][\w.\-]*\Z", re.ASCII)


def _decode(kind: str, text: str) -> Any:
    if kind == "INT":
        return int(text)
    if kind == "FLOAT":
        return float(text)
    if kind == "STRING":
        return json.loads(text)
    if kind == "REF":
        return Ref(int(text[1:]))
    if kind == "KEY":
        body = text[1:]
        return Key(json.loads(body) if body.startswith('"') else body)
    return text


def tokenize(text: str, file: str = "<string>") -> list[Token]:
    """Split ``text`` into tokens (comments and blanks dropped); ends with an ``EOF`` token.

    Raises:
        ParseError: at the first character that starts no token.
    """
    out: list[Token] = []
    line, line_start = 1, 0
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "ERROR"
        start = m.start()
        if kind == "NEWLINE":
            out.append(Token("NEWLINE", "\n", line, start - line_start + 1))
            line, line_start = line + 1, start + 1
            continue
        if kind == "SKIP":
            continue
        col = start - line_start + 1
        if kind == "ERROR":
            ch = m.group()
            what = "unterminated string" if ch == '"' else f"unexpected character {ch!r}"
            raise ParseError(what, file=file, line=line, col=col)
        try:
            value = _decode(kind, m.group())
        except ValueError as e:
            raise ParseError(f"bad {kind.lower()}: {e}", file=file, line=line, col=col) from None
        out.append(Token(kind, m.group(), line, col, value))
    out.append(Token("EOF", "", line, len(text) - line_start + 1))
    return out


def quote(s: str) -> str:
    """A string literal that :func:`tokenize` reads back as ``s``."""
    return json.dumps(s, ensure_ascii=False)


class TokenStream:
    """A cursor over the tokens of one text, with the shared value grammar.

    Grammar of values (used by every level)::

        value := INT | FLOAT | STRING | REF | KEY | IDENT | "[" [value ("," value)*] "]"
        attrs := (IDENT "=" value)*          # up to the end of the line
    """

    def __init__(self, text: str, file: str = "<string>"):
        self.file = file
        self.text = text
        self.toks = tokenize(text, file)
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token:
        """The token ``ahead`` places after the cursor (``EOF`` past the end)."""
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> Token:
        """Consume and return the current token."""
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        """True when the current token has this kind (and text)."""
        tok = self.peek()
        return tok.kind == kind and (text is None or tok.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        """Consume the current token if it matches, else return None."""
        return self.next() if self.at(kind, text) else None

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        """A :class:`ParseError` located at ``tok`` (default: the current token)."""
        tok = tok or self.peek()
        return ParseError(message, file=self.file, line=tok.line, col=tok.col)

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        """Consume a token of this kind (and text), or raise a :class:`ParseError`."""
        if self.at(kind, text):
            return self.next()
        tok = self.peek()
        want = what or (repr(text) if text else kind.lower())
        got = "end of line" if tok.kind == "NEWLINE" else (
            "end of file" if tok.kind == "EOF" else repr(tok.text))
        raise self.error(f"expected {want}, got {got}", tok)

    def skip_newlines(self) -> None:
        """Skip blank lines (and lines that held only comments)."""
        while self.at("NEWLINE"):
            self.next()

    def end_line(self) -> None:
        """Require the end of the current line (or of the file)."""
        if not self.at("EOF"):
            self.expect("NEWLINE", what="end of line")

    def value(self, depth: int = 0) -> Any:
        """Parse one value; lists come back as Python lists.

        Raises:
            ParseError: also for lists nested deeper than :data:`~pccc.ir.limits.MAX_NESTING`.
        """
        tok = self.peek()
        if tok.kind in ("INT", "FLOAT", "STRING", "REF", "KEY", "IDENT"):
            return self.next().value
        if tok.kind == "SYM" and tok.text == "[":
            if depth >= MAX_NESTING:
                raise self.error(f"lists nested deeper than {MAX_NESTING} levels", tok)
            return self._list(depth + 1)
        raise self.error("expected a value", tok)

    def _list(self, depth: int) -> list[Any]:
        self.expect("SYM", "[")
        items: list[Any] = []
        if self.accept("SYM", "]"):
            return items
        while True:
            items.append(self.value(depth))
            if self.accept("SYM", "]"):
                return items
            self.expect("SYM", ",", what="',' or ']'")

    def attrs(self) -> dict[str, tuple[Any, Token]]:
        """Parse ``key=value`` pairs up to the end of the line: ``{key: (value, key token)}``."""
        out: dict[str, tuple[Any, Token]] = {}
        while not (self.at("NEWLINE") or self.at("EOF")):
            key = self.expect("IDENT", what="attribute name")
            if key.text in out:
                raise self.error(f"attribute {key.text!r} given twice", key)
            self.expect("SYM", "=")
            out[key.text] = (self.value(), key)
        return out
