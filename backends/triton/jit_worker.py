"""A compile worker's loop (:func:`serve`, in a child forked by :mod:`.compile_workers`):
reads one task per line of its task pipe, compiles it with ``triton.compile`` into Triton's
on-disk cache, answers one JSON line per task on its answer pipe. No GPU is touched: the
target comes with the task.

A task is JSON: ``{"id", "kernel": "module:qualname", "target": {"backend", "arch",
"warp_size"}, "signature", "attrs", "options": the ``repr`` of each, "constants": [[key,
tag, value...], ...]}``; constants are tagged (:func:`decode_constant`) because Triton's own
JSON (``specialization_data``) cannot tell a string constexpr from a dtype name.
:mod:`.compile_workers` is the other side.
"""

from __future__ import annotations

import ast
import importlib
import json
import time
from typing import Any, TextIO


def resolve(ref: str) -> Any:
    """The Triton function ``module:qualname`` (a lazily made kernel made now)."""
    from pccc.backends.triton.lazyjit import resolve as made

    mod, _, qual = ref.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return made(obj)


def decode_constant(item: list[Any]) -> tuple[tuple[int, ...], Any]:
    """``[key, tag, value...]`` -> ``(key, value)``: tags ``py`` (a JSON value as it is),
    ``dtype`` (``tl.dtype(name)``), ``constexpr`` (``tl.constexpr(value)``) and ``jit`` (the
    Triton function ``module:qualname``)."""
    import triton.language as tl

    key, tag, *rest = item
    value: Any
    if tag == "py":
        value = rest[0]
    elif tag == "dtype":
        value = tl.dtype(rest[0])
    elif tag == "constexpr":
        value = tl.constexpr(rest[0])
    elif tag == "jit":
        value = resolve(rest[0])
    else:
        raise ValueError(f"unknown constant tag {tag!r}")
    return tuple(key), value


def compile_task(task: dict[str, Any]) -> None:
    """Compile one task into Triton's cache."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = resolve(task["kernel"])
    consts = dict(decode_constant(c) for c in task["constants"])
    src = ASTSource(fn, ast.literal_eval(task["signature"]), consts,
                    ast.literal_eval(task["attrs"]))
    triton.compile(src, target=GPUTarget(**task["target"]),
                   options=ast.literal_eval(task["options"]))


def serve(inp: TextIO, out: TextIO) -> None:
    """The worker's loop: a task per line of ``inp``, an answer per line of ``out``. The
    process is a fork of the module's own (:class:`.compile_workers.Forked`): Triton's cache
    folder, its hash and the kernels' cache keys are the parent's, computed before the fork
    (not computed again here, whose locks another of the parent's threads could have held
    at the fork)."""
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in inp:
        if not line.strip():
            continue
        task = json.loads(line)
        t0 = time.perf_counter()
        try:
            compile_task(task)
            answer = {"id": task["id"], "ok": True}
        except Exception as e:  # reported: the parent compiles this one itself
            answer = {"id": task["id"], "ok": False, "error": f"{type(e).__name__}: {e}"}
        answer["s"] = round(time.perf_counter() - t0, 4)
        print(json.dumps(answer), file=out, flush=True)
