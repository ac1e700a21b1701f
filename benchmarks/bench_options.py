"""``NAME=VALUE`` command-line options of the benchmark scripts, as ``pccc.compile`` keyword
options (``gpu_bench.py``, ``kernel_kinds.py``, ``bench_paper.py``). Imports nothing heavy, and
sets nothing (``gpu_bench.py`` switches Triton's interpreter off when imported)."""

from __future__ import annotations


def parse_options(items: list[str]) -> dict:
    """``NAME=VALUE`` strings as ``pccc.compile`` keyword options (``tiles.KEY=N`` entries
    gather into ``tiles``; true/false, integers and words as such)."""
    out: dict = {}
    for item in items:
        name, _, text = item.partition("=")
        value: object = {"true": True, "false": False}.get(text.lower(), text)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if name.startswith("tiles."):
            out.setdefault("tiles", {})[name[6:]] = value
        else:
            out[name] = value
    return out
