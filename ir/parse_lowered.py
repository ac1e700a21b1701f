"""Parse the lowered levels (L1, L2, L3) from ``.pcir`` text; see :mod:`pccc.ir.print_lowered`.

Importing this module registers the parsers with :func:`pccc.ir.parser.parse`, which dispatches
on the header line (``pcir 1 L2``). An L1 or L2 text is split into its own statements and, when
it embeds its source circuit, the L0 statements, which the L0 parser reads (line numbers
kept). A text that names its source by digest (``source sha256="..." path="..."``) is read with
the circuit handed in (``parse(text, source=circuit)``) or the file ``path`` names (relative to
the text's folder: an L0 file, or a lowered one whose source circuit it is); either way the
circuit's digest must be the one named.

Example::

    from pccc.ir.parse_lowered import read_pcir_any
    value = read_pcir_any("003_partition_layers.pcir")   # reads its source file too
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from pccc.ir.blocked import BlockedCircuit, split_root, wrap_root
from pccc.ir.circuit import Circuit
from pccc.ir.digest import ALGORITHM, circuit_digest
from pccc.ir.errors import ParseError
from pccc.ir.layered import Layer, LayeredCircuit, ProductGroup, SumGroup
from pccc.ir.lexer import Key, Ref, Token, TokenStream
from pccc.ir.parser import parse, register_parser
from pccc.ir.print_lowered import implied_blocks

_OWN = {"source", "wrap-root", "blocks", "layer", "sums", "products"}
#: the files whose source circuits are being read (a file that names itself is refused)
_READING: ContextVar[tuple[str, ...]] = ContextVar("_READING", default=())


def _stream(ts: TokenStream, toks: list[Token]) -> TokenStream:
    """A stream over ``toks`` sharing ``ts``'s file name and text."""
    sub = TokenStream("", ts.file)
    sub.text = ts.text
    last = toks[-1] if toks else ts.peek()
    sub.toks = toks + [Token("EOF", "", last.line, last.col + 1)]
    sub.pos = 0
    return sub


def _split(ts: TokenStream) -> tuple[TokenStream, TokenStream]:
    """The L0 statements and this level's own statements, as two streams; an own statement's
    list goes on over the following lines until its bracket closes."""
    l0: list[Token] = []
    own: list[Token] = []
    line: list[Token] = []
    depth = 0
    for tok in ts.toks[ts.pos:]:
        if tok.kind == "EOF":
            break
        is_own = bool(line) and line[0].kind == "IDENT" and line[0].text in _OWN
        if tok.kind == "SYM" and tok.text in "[]":
            depth += 1 if tok.text == "[" else -1
        if tok.kind == "NEWLINE" and depth > 0 and is_own:
            continue
        line.append(tok)
        if tok.kind == "NEWLINE":
            (own if is_own else l0).extend(line)
            line, depth = [], 0
    if line:
        (own if line[0].kind == "IDENT" and line[0].text in _OWN else l0).extend(line)
    return _stream(ts, l0), _stream(ts, own)


def _circuit(ts: TokenStream, base_dir: Path, allow_elided: bool) -> Circuit:
    from pccc.ir.parser import _parse_l0  # the L0 statement parser behind parse()

    return _parse_l0(ts, base_dir=base_dir, allow_elided=allow_elided)


def _int_attr(ts: TokenStream, attrs: dict[str, tuple[Any, Token]], name: str, where: Token
              ) -> int:
    if name not in attrs:
        raise ts.error(f"missing attribute {name!r}", where)
    val, tok = attrs.pop(name)
    if not isinstance(val, int) or isinstance(val, bool) or val < 0:
        raise ts.error(f"{name} must be a non-negative integer, got {val!r}", tok)
    return val


def _no_extra(ts: TokenStream, attrs: dict[str, tuple[Any, Token]], what: str) -> None:
    for name, (_, tok) in attrs.items():
        raise ts.error(f"unknown attribute {name!r} for {what}", tok)


def source_of(value: Any) -> Circuit:
    """The source circuit of an L0, L1 or L2 value (an L0 circuit is its own)."""
    c = getattr(value, "circuit", value)
    if not isinstance(c, Circuit):
        raise TypeError(f"a {getattr(value, 'level', type(value).__name__)} value has no "
                        "source circuit")
    return split_root(c)[0]


def _read_source(own: TokenStream, where: Token, base_dir: Path, name: str,
                 allow_elided: bool) -> Circuit:
    path = base_dir / name
    key = str(path.resolve())
    if key in _READING.get():
        raise own.error(f"source path {name}: the file names itself as its source", where)
    if not path.is_file():
        raise own.error(f"source path {name}: no such file (in {base_dir})", where)
    token = _READING.set(_READING.get() + (key,))
    try:
        value = read_pcir_any(path, allow_elided=allow_elided)
    finally:
        _READING.reset(token)
    if getattr(value, "level", None) not in ("L0", "L1", "L2"):
        raise own.error(f"source path {name}: an {value.level} text holds no circuit", where)
    return source_of(value)


def _source(own: TokenStream, l0: TokenStream, base_dir: Path, allow_elided: bool,
            given: Any) -> Circuit:
    """The source circuit: embedded, handed in, or read from the file the text names."""
    embedded = any(t.kind not in ("NEWLINE", "EOF") for t in l0.toks)
    own.skip_newlines()
    if not own.at("IDENT", "source"):
        if embedded:
            return _circuit(l0, base_dir, allow_elided)
        if given is not None:
            return source_of(given)
        raise own.error("no source circuit: embed its L0 statements or name it "
                        f"('source {ALGORITHM}=\"...\" path=\"...\"')")
    where = own.next()
    attrs = own.attrs()
    own.end_line()
    own.skip_newlines()
    if embedded:
        raise own.error("the source circuit is both embedded and named", where)
    digest, tok = attrs.pop(ALGORITHM, (None, where))
    if not isinstance(digest, str) or len(digest) != 64:
        raise own.error(f"source: expected {ALGORITHM}=\"<64 hex digits>\"", tok)
    path, ptok = attrs.pop("path", (None, where))
    _no_extra(own, attrs, "source")
    if given is not None:
        c, named = source_of(given), "the circuit given"
    elif isinstance(path, str):
        c, named = _read_source(own, ptok, base_dir, path, allow_elided), f"source {path}"
    else:
        raise own.error(f"the source circuit ({ALGORITHM} {digest[:12]}...) is named without "
                        "a path: read the text with it (parse(text, source=circuit))", where)
    if circuit_digest(c) != digest:
        raise own.error(f"{named} has {ALGORITHM} {circuit_digest(c)[:12]}..., the text names "
                        f"{digest[:12]}...", tok)
    return c


def _wrapped(own: TokenStream, src: Circuit) -> Circuit:
    """The source with its root wrapped when the text says ``wrap-root %N``."""
    if not own.at("IDENT", "wrap-root"):
        return src
    own.next()
    ref = own.expect("REF", what="the wrapper's id %N")
    if ref.value.id != len(src.nodes):
        raise own.error(f"the wrapper is %{len(src.nodes)}, the node after the source's last",
                        ref)
    own.end_line()
    own.skip_newlines()
    return wrap_root(src)


def _shape_and_refs(own: TokenStream, where: Token, what: str) -> tuple[int, int, list[int]]:
    """``B=.. C=.. [%a, %b, ...]`` after the statement's first word."""
    attrs: dict[str, tuple[Any, Token]] = {}
    while own.at("IDENT"):
        key = own.next()
        own.expect("SYM", "=")
        attrs[key.text] = (own.value(), key)
    tok = own.peek()
    refs = own.value()
    if not isinstance(refs, list) or not all(isinstance(r, Ref) for r in refs):
        raise own.error("expected a list of sum vectors [%a, %b, ...]", tok)
    B, C = _int_attr(own, attrs, "B", where), _int_attr(own, attrs, "C", where)
    _no_extra(own, attrs, what)
    own.end_line()
    own.skip_newlines()
    return B, C, [r.id for r in refs]


def _blocks(own: TokenStream, c: Circuit) -> dict[int, tuple[int, int]]:
    blocks: dict[int, tuple[int, int]] = {}
    while own.at("IDENT", "blocks"):
        where = own.next()
        B, C, ids = _shape_and_refs(own, where, "blocks")
        for v in ids:
            if not 0 <= v < len(c.nodes) or v in blocks:
                raise own.error(f"%{v}: undefined or blocked twice", where)
            blocks[v] = (B, C)
    return blocks


def _layer(own: TokenStream) -> Layer:
    sums: list[SumGroup] = []
    prods: list[ProductGroup] = []
    while own.at("IDENT", "sums") or own.at("IDENT", "products"):
        where = own.next()
        if where.text == "sums":
            B, C, ids = _shape_and_refs(own, where, "sums")
            sums.append(SumGroup(B, C, tuple(ids)))
            continue
        attrs = own.attrs()
        fanin = _int_attr(own, attrs, "fanin", where)
        runs = _int_attr(own, attrs, "runs", where)
        _no_extra(own, attrs, "products")
        prods.append(ProductGroup(fanin, runs))
        own.end_line()
        own.skip_newlines()
    return Layer(tuple(sums), tuple(prods))


def _end(own: TokenStream, level: str) -> None:
    if not own.at("EOF"):
        raise own.error(f"unexpected {own.peek().text!r} in an {level} text")


def _parse_l1(ts: TokenStream, *, base_dir: Path, allow_elided: bool, source: Any = None
              ) -> BlockedCircuit:
    l0, own = _split(ts)
    c = _wrapped(own, _source(own, l0, base_dir, allow_elided, source))
    blocks = _blocks(own, c)
    _end(own, "L1")
    return BlockedCircuit(c, blocks)


def _parse_l2(ts: TokenStream, *, base_dir: Path, allow_elided: bool, source: Any = None
              ) -> LayeredCircuit:
    l0, own = _split(ts)
    c = _wrapped(own, _source(own, l0, base_dir, allow_elided, source))
    blocks = _blocks(own, c)
    layers: list[Layer] = []
    while own.at("IDENT", "layer"):
        own.next()
        num = own.expect("INT", what="layer number")
        if num.value != len(layers):
            raise own.error(f"expected layer {len(layers)}, got {num.value}", num)
        own.end_line()
        own.skip_newlines()
        layers.append(_layer(own))
    _end(own, "L2")
    for v, shape in implied_blocks(layers).items():
        blocks.setdefault(v, shape)
    return LayeredCircuit(BlockedCircuit(c, blocks), tuple(layers))


register_parser("L1", _parse_l1)
register_parser("L2", _parse_l2)


def _parse_l3(ts: TokenStream, *, base_dir: Path, allow_elided: bool, map_arrays: bool = False
              ) -> Any:
    from pccc.ir.parse_plan import PlanParser

    p = PlanParser(ts, base_dir, allow_elided, map_arrays)
    try:
        return p.run()
    finally:
        for store in p.npz.values():
            store.close()


register_parser("L3", _parse_l3)


def parse_any(text: str, **options: Any) -> Any:
    """Parse a ``.pcir`` text of any level (options as :func:`pccc.ir.parser.parse`)."""
    return parse(text, **options)


def read_pcir_any(path: str | Path, *, allow_elided: bool = False, source: Any = None,
                  map_arrays: bool = False) -> Any:
    """Read a ``.pcir`` file of any level (sidecars and source files relative to its folder;
    ``source`` and ``map_arrays`` as :func:`pccc.ir.parser.parse`).

    Raises:
        ParseError: ``file:line:col: message``.
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"byte {e.start}: not UTF-8 text", file=str(p)) from None
    return parse(text, file=str(p), base_dir=p.parent, allow_elided=allow_elided, source=source,
                 map_arrays=map_arrays)


__all__ = ["Key", "parse_any", "read_pcir_any", "np"]
