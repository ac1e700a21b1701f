"""Parse the lowered levels (L1, L2, L3) from ``.pcir`` text; see :mod:`pccc.ir.print_lowered`.

Importing this module registers the parsers with :func:`pccc.ir.parser.parse`, which dispatches
on the header line (``pcir 1 L2``). L1 and L2 texts are split into their L0 part, which the L0
parser reads (line numbers kept), and their own statements.

Example::

    from pccc.ir.parse_lowered import parse_any
    value = parse_any(open("003_partition_layers.pcir").read(), file="003_partition_layers.pcir")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import pccc.ir.print_lowered  # noqa: F401  (parse and print register together)
from pccc.ir.blocked import BlockedCircuit
from pccc.ir.circuit import Circuit
from pccc.ir.errors import ParseError
from pccc.ir.layered import Layer, LayeredCircuit, ProductGroup, SumGroup
from pccc.ir.lexer import Key, Ref, Token, TokenStream
from pccc.ir.parser import parse, register_parser

_OWN = {"blocks", "layer", "sums", "products"}


def _stream(ts: TokenStream, toks: list[Token]) -> TokenStream:
    """A stream over ``toks`` sharing ``ts``'s file name (the lexer has no such constructor)."""
    sub = TokenStream("", ts.file)
    last = toks[-1] if toks else ts.peek()
    sub.toks = toks + [Token("EOF", "", last.line, last.col + 1)]
    sub.pos = 0
    return sub


def _split(ts: TokenStream) -> tuple[TokenStream, TokenStream]:
    """The L0 statements and this level's own statements, as two streams."""
    l0: list[Token] = []
    own: list[Token] = []
    line: list[Token] = []
    for tok in ts.toks[ts.pos:]:
        if tok.kind == "EOF":
            break
        line.append(tok)
        if tok.kind == "NEWLINE":
            first = line[0]
            (own if first.kind == "IDENT" and first.text in _OWN else l0).extend(line)
            line = []
    if line:
        first = line[0]
        (own if first.kind == "IDENT" and first.text in _OWN else l0).extend(line)
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


def _blocks(own: TokenStream, c: Circuit) -> dict[int, tuple[int, int]]:
    blocks: dict[int, tuple[int, int]] = {}
    while own.at("IDENT", "blocks"):
        where = own.next()
        ref = own.expect("REF", what="sum vector %id")
        if not 0 <= ref.value.id < len(c.nodes) or ref.value.id in blocks:
            raise own.error(f"{ref.text}: undefined or blocked twice", ref)
        attrs = own.attrs()
        B = _int_attr(own, attrs, "B", where)
        C = _int_attr(own, attrs, "C", where)
        _no_extra(own, attrs, "blocks")
        blocks[ref.value.id] = (B, C)
        own.end_line()
        own.skip_newlines()
    return blocks


def _layer(own: TokenStream) -> Layer:
    sums: list[SumGroup] = []
    prods: list[ProductGroup] = []
    while own.at("IDENT", "sums") or own.at("IDENT", "products"):
        where = own.next()
        if where.text == "sums":
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
            _no_extra(own, attrs, "sums")
            sums.append(SumGroup(B, C, tuple(r.id for r in refs)))
        else:
            attrs = own.attrs()
            fanin = _int_attr(own, attrs, "fanin", where)
            runs = _int_attr(own, attrs, "runs", where)
            _no_extra(own, attrs, "products")
            prods.append(ProductGroup(fanin, runs))
        own.end_line()
        own.skip_newlines()
    return Layer(tuple(sums), tuple(prods))


def _parse_l1(ts: TokenStream, *, base_dir: Path, allow_elided: bool) -> BlockedCircuit:
    l0, own = _split(ts)
    c = _circuit(l0, base_dir, allow_elided)
    own.skip_newlines()
    blocks = _blocks(own, c)
    if not own.at("EOF"):
        raise own.error(f"unexpected {own.peek().text!r} in an L1 text")
    return BlockedCircuit(c, blocks)


def _parse_l2(ts: TokenStream, *, base_dir: Path, allow_elided: bool) -> LayeredCircuit:
    l0, own = _split(ts)
    c = _circuit(l0, base_dir, allow_elided)
    own.skip_newlines()
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
    if not own.at("EOF"):
        raise own.error(f"unexpected {own.peek().text!r} in an L2 text")
    return LayeredCircuit(BlockedCircuit(c, blocks), tuple(layers))


register_parser("L1", _parse_l1)
register_parser("L2", _parse_l2)


def _parse_l3(ts: TokenStream, *, base_dir: Path, allow_elided: bool) -> Any:
    from pccc.ir.parse_plan import PlanParser

    p = PlanParser(ts, base_dir, allow_elided)
    try:
        return p.run()
    finally:
        for store in p.npz.values():
            store.close()


register_parser("L3", _parse_l3)


def parse_any(text: str, **options: Any) -> Any:
    """Parse a ``.pcir`` text of any level (options as :func:`pccc.ir.parser.parse`)."""
    return parse(text, **options)


def read_pcir_any(path: str | Path, *, allow_elided: bool = False) -> Any:
    """Read a ``.pcir`` file of any level (sidecars relative to its folder).

    Raises:
        ParseError: ``file:line:col: message``.
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"byte {e.start}: not UTF-8 text", file=str(p)) from None
    return parse(text, file=str(p), base_dir=p.parent, allow_elided=allow_elided)


__all__ = ["Key", "parse_any", "read_pcir_any", "np"]
