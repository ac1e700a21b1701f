"""Pipeline strings: ``canonicalize,group-blocks{block-size=64},partition-layers,layout-params``.

A pipeline is a comma-separated list of pass names, each with optional ``{name=value,...}``
options. The names ``default`` (inference: rewrites that change the parametrization allowed)
and ``training`` (every source parameter kept) stand for the named pipelines in
:data:`NAMED`, alone or as an item of a longer pipeline. :func:`parse_pipeline` converts
option values with the pass's annotations and checks the chain of levels before anything runs.

Example::

    steps = parse_pipeline("canonicalize,group-blocks{block-size=32}", start_level="L0")
    steps[1].options        # {'block_size': 32}
    format_pipeline(steps)  # 'canonicalize,group-blocks{block-size=32}'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pccc.ir.errors import PassError
from pccc.passes.registry import PassInfo, get_pass

#: named pipelines, each a pipeline string of its own
NAMED: dict[str, str] = {
    "default": "canonicalize{collapse-sums=true,merge-identical=true,merge-sum-chains=true},"
               "group-blocks,partition-layers,layout-params",
    "training": "canonicalize,group-blocks,partition-layers,layout-params",
}

_ITEM_RE = re.compile(r"\s*([A-Za-z0-9_\-]+)\s*(?:\{([^{}]*)\})?\s*(?:,|\Z)")


@dataclass(frozen=True)
class Step:
    """One pass of a pipeline with its converted options."""

    info: PassInfo
    """the registered pass"""
    options: dict[str, Any] = field(default_factory=dict)
    """Python parameter name -> converted value (only the options given)"""

    @property
    def name(self) -> str:
        return self.info.name

    def text(self) -> str:
        """The step as a pipeline item (``name{opt=value}``)."""
        if not self.options:
            return self.name
        by_param = {o.param: o for o in self.info.options}
        parts = []
        for param in sorted(self.options, key=lambda p: by_param[p].name):
            v = self.options[param]
            val = str(v).lower() if isinstance(v, bool) else str(v)
            parts.append(f"{by_param[param].name}={val}")
        return f"{self.name}{{{','.join(parts)}}}"


def _split(text: str) -> list[tuple[str, str | None]]:
    items: list[tuple[str, str | None]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ITEM_RE.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"malformed pipeline at column {pos + 1}: {text[pos:pos + 30]!r} "
                            f"(expected 'name' or 'name{{option=value,...}}')")
        items.append((m.group(1), m.group(2)))
        pos = m.end()
        if text[pos - 1] == "," and pos == len(text):
            raise PassError("pipeline ends with ','")
    return items


def _step(name: str, opts: str | None) -> Step:
    info = get_pass(name)
    options: dict[str, Any] = {}
    for part in (opts or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise PassError(f"{name}: option {part.strip()!r} needs a value (name=value)")
        key, val = (s.strip() for s in part.split("=", 1))
        opt = info.option(key)
        if opt.param in options:
            raise PassError(f"{name}: option {key} given twice")
        options[opt.param] = opt.convert(val, name)
    return Step(info, options)


def expand(text: str, _depth: int = 0) -> list[tuple[str, str | None]]:
    """The pipeline's items with named pipelines expanded."""
    out: list[tuple[str, str | None]] = []
    for name, opts in _split(text):
        if name in NAMED and opts is None and _depth < 4:
            out.extend(expand(NAMED[name], _depth + 1))
        else:
            out.append((name, opts))
    return out


def parse_pipeline(text: str, *, start_level: str | None = "L0") -> list[Step]:
    """Parse and type-check a pipeline string.

    Args:
        text: the pipeline (``""`` is the empty pipeline).
        start_level: the level of the IR it will run on; None skips the first check.

    Raises:
        PassError: an unknown pass or option, a bad value, or a level mismatch (listing what
            would have been valid).
    """
    steps = [_step(n, o) for n, o in expand(text)]
    level = start_level
    for i, st in enumerate(steps):
        if level is not None and st.info.input_level != level:
            before = format_pipeline(steps[:i]) or "the input"
            raise PassError(f"pass {st.name!r} reads {st.info.input_level} but {before} "
                            f"gives {level}")
        level = st.info.output_level
    return steps


def format_pipeline(steps: list[Step]) -> str:
    """The pipeline string of ``steps`` (round-trips through :func:`parse_pipeline`)."""
    return ",".join(st.text() for st in steps)
