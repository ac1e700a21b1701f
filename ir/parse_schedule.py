"""Parse the L4 ``KernelSchedule`` text written by :mod:`pccc.ir.print_schedule`.

Statements, in order::

    schedule backend="triton" precision="tf32" programs=P stride_tile=T version=1
    rows num_node_slots=N num_roots=R root_slot=S
    input K node_start=S n=N param_size=P                  (one per input layer, K = 0, 1, ...)
    part I layer=L partition=J B=b C=c fanin=f NC=n write="store" em_store=false small=true
      counts tiles=T chunks=K weights=W
      blocks i64[nb] = ...   sib i64[g, G] = ...   rows i64[k, 2] = ...   kids i64[m, 3] = ...
    flow_zero all | flow_zero i64[t, 2] = ...
    forward
      KIND ["kernel"] attr=value ... flag ...              (one launch a line)
    backward
      KIND ["kernel"] attr=value ... flag ...

Arrays are read as in L3 (:class:`pccc.ir.parse_plan.PlanParser`: inline, wrapped, elided,
sidecar). Importing the module registers the parser with :func:`pccc.ir.parser.parse`.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from pccc.ir.lexer import Token, TokenStream
from pccc.ir.parse_plan import PlanParser
from pccc.ir.parser import register_parser
from pccc.ir.schedule import (
    BACKWARD_KINDS,
    FORWARD_KINDS,
    SCHEDULE_VERSION,
    InputRows,
    KernelSchedule,
    Launch,
    SumPart,
)

_LAUNCH_FIELDS = {f.name: f.type for f in fields(Launch)[1:]}


class ScheduleParser(PlanParser):
    """State of one L4 parse."""

    def str_attr(self, attrs: dict[str, tuple[Any, Token]], name: str) -> str:
        if name not in attrs:
            raise self.ts.error(f"missing attribute {name!r}")
        val, tok = attrs.pop(name)
        if not isinstance(val, str) or isinstance(val, bool):
            raise self.ts.error(f"{name} must be a string, got {val!r}", tok)
        return val

    def bool_attr(self, attrs: dict[str, tuple[Any, Token]], name: str) -> bool:
        if name not in attrs:
            raise self.ts.error(f"missing attribute {name!r}")
        val, tok = attrs.pop(name)
        if val not in ("true", "false"):
            raise self.ts.error(f"{name} must be true or false, got {val!r}", tok)
        return bool(val == "true")

    def no_extra(self, attrs: dict[str, tuple[Any, Token]], what: str) -> None:
        if attrs:
            name, (_, tok) = next(iter(attrs.items()))
            raise self.ts.error(f"unknown attribute {name!r} of {what}", tok)

    def numbered(self, word: str, expected: int) -> dict[str, tuple[Any, Token]]:
        """``word K attr=value ...`` whose number must be ``expected``."""
        ts = self.ts
        ts.skip_newlines()
        ts.expect("IDENT", word)
        tok = ts.expect("INT", what=f"the number of the {word}")
        if tok.value != expected:
            raise ts.error(f"{word} {tok.value} out of order: expected {word} {expected}", tok)
        attrs = ts.attrs()
        self.line_end()
        return attrs

    def part(self, i: int) -> SumPart:
        a = self.numbered("part", i)
        ints = [self.int_attr(a, k) for k in ("layer", "partition", "B", "C", "fanin", "NC")]
        write = self.str_attr(a, "write")
        em_store, small = self.bool_attr(a, "em_store"), self.bool_attr(a, "small")
        self.no_extra(a, f"part {i}")
        c = self.head("counts")
        tiles, chunks, weights = (self.int_attr(c, k) for k in ("tiles", "chunks", "weights"))
        self.no_extra(c, f"the counts of part {i}")
        arrays = [self.array(n) for n in ("blocks", "sib", "rows", "kids")]
        layer, partition, B, C, fanin, NC = ints
        blocks, sib, rows, kids = arrays
        return SumPart(layer, partition, B, C, fanin, NC, blocks, sib, small, write, em_store,
                       rows, kids, tiles, chunks, weights)

    def launch(self, kinds: tuple[str, ...], section: str) -> Launch:
        ts = self.ts
        tok = ts.expect("IDENT", what="a launch kind")
        if tok.text not in kinds:
            raise ts.error(f"unknown {section} launch {tok.text!r} (kinds: "
                           f"{', '.join(kinds)})", tok)
        values: dict[str, Any] = {}
        if ts.at("STRING"):
            values["kernel"] = ts.next().value
        while not (ts.at("NEWLINE") or ts.at("EOF")):
            key = ts.expect("IDENT", what="a launch attribute or flag")
            name = key.text
            typ = _LAUNCH_FIELDS.get(name)
            if typ is None or typ == "str" or name in values:
                what = "given twice" if name in values else "unknown"
                raise ts.error(f"{what} launch attribute {name!r} (attributes: "
                               f"{', '.join(n for n in _LAUNCH_FIELDS if n != 'kernel')})", key)
            if typ == "bool":
                values[name] = True
                continue
            ts.expect("SYM", "=", what=f"'=' after {name}")
            vtok = ts.peek()
            val = ts.value()
            if not isinstance(val, int) or isinstance(val, bool):
                raise ts.error(f"{name} must be an integer, got {val!r}", vtok)
            values[name] = val
        self.line_end()
        return Launch(tok.text, **values)

    def launches(self, section: str, kinds: tuple[str, ...]) -> tuple[Launch, ...]:
        ts = self.ts
        ts.skip_newlines()
        ts.expect("IDENT", section, what=f"'{section}'")
        self.line_end()
        out = []
        while ts.at("IDENT") and ts.peek().text not in ("forward", "backward"):
            out.append(self.launch(kinds, section))
        return tuple(out)

    def run(self) -> KernelSchedule:  # type: ignore[override]
        ts = self.ts
        a = self.head("schedule")
        version = self.int_attr(a, "version")
        if version != SCHEDULE_VERSION:
            raise ts.error(f"schedule version {version}; this pccc reads {SCHEDULE_VERSION}")
        backend, precision = self.str_attr(a, "backend"), self.str_attr(a, "precision")
        head = {k: self.int_attr(a, k) for k in ("programs", "stride_tile")}
        self.no_extra(a, "the schedule")
        r = self.head("rows")
        head.update({k: self.int_attr(r, k) for k in ("num_node_slots", "num_roots",
                                                      "root_slot")})
        self.no_extra(r, "rows")
        inputs: list[InputRows] = []
        while ts.at("IDENT", "input"):
            ia = self.numbered("input", len(inputs))
            inputs.append(InputRows(self.int_attr(ia, "node_start"), self.int_attr(ia, "n"),
                                    self.int_attr(ia, "param_size")))
            self.no_extra(ia, f"input {len(inputs) - 1}")
        parts: list[SumPart] = []
        while ts.at("IDENT", "part"):
            parts.append(self.part(len(parts)))
        ts.skip_newlines()
        ts.expect("IDENT", "flow_zero", what="'flow_zero'")
        zero = None
        if ts.accept("IDENT", "all"):
            self.line_end()
        else:
            zero = self.array_body()
        fwd = self.launches("forward", FORWARD_KINDS)
        bwd = self.launches("backward", BACKWARD_KINDS)
        ts.skip_newlines()
        if not ts.at("EOF"):
            raise ts.error(f"unexpected {ts.peek().text!r} at the end of a schedule")
        return KernelSchedule(backend, head["num_node_slots"], head["root_slot"],
                              head["num_roots"], precision, head["programs"],
                              head["stride_tile"], tuple(inputs), tuple(parts), zero, fwd, bwd)


def _parse_l4(ts: TokenStream, *, base_dir: Path, allow_elided: bool) -> KernelSchedule:
    p = ScheduleParser(ts, base_dir, allow_elided)
    try:
        return p.run()
    finally:
        for store in p.npz.values():
            store.close()


register_parser("L4", _parse_l4)
