"""Run a pipeline: verify after every pass, call instruments, report failures with a repro.

Example::

    from pccc.passes.manager import run_pipeline
    from pccc.passes.instruments import TimePasses
    timer = TimePasses()
    plan = run_pipeline(circuit, "default", instruments=[timer])
    print(timer.report())
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pccc.ir.errors import PassError, VerifyError
from pccc.passes.instruments import Instrument
from pccc.passes.pipeline import Step, format_pipeline, parse_pipeline


def level_of(ir: Any) -> str:
    """The IR level of a value (``L0`` .. ``L4``)."""
    level = getattr(ir, "level", None)
    if level not in ("L0", "L1", "L2", "L3", "L4"):
        raise PassError(f"not an IR value: {type(ir).__name__}")
    return str(level)


def verify_any(ir: Any) -> None:
    """Run the verifier of the value's level.

    Raises:
        VerifyError: the value breaks an invariant of its level.
    """
    level = level_of(ir)
    if level == "L0":
        from pccc.ir.verify import verify

        verify(ir)
    elif level == "L1":
        from pccc.ir.blocked import verify_blocked

        verify_blocked(ir)
    elif level == "L2":
        from pccc.ir.layered import verify_layered

        verify_layered(ir)
    elif level == "L3":
        from pccc.ir.plan_verify import verify_plan

        verify_plan(ir)
    else:
        from pccc.ir.schedule_verify import verify_schedule

        verify_schedule(ir)


def _write_repro(folder: Path, ir: Any, steps: list[Step]) -> Path:
    from pccc.ir.print_lowered import write_pcir_any

    folder.mkdir(parents=True, exist_ok=True)
    write_pcir_any(ir, folder / "repro.pcir")
    (folder / "repro.pipeline").write_text(format_pipeline(steps) + "\n")
    return folder / "repro.pcir"


def _fail(step: Step, done: list[Step], what: str, err: BaseException, ir: Any,
          rest: list[Step], repro_dir: Path | None) -> PassError:
    before = format_pipeline(done) or "nothing"
    msg = f"pass {step.name!r} {what}: {err}\n  passes run before it: {before}"
    if repro_dir is not None:
        try:
            path = _write_repro(repro_dir, ir, rest)
            pipe = path.with_suffix(".pipeline")
            msg += f"\n  reproduce with: pccc opt {path} -p \"$(cat {pipe})\""
        except Exception as e:  # the repro is a courtesy; the pass error matters more
            msg += f"\n  (could not write the repro: {e})"
    out = PassError(msg)
    out.pass_name = step.name  # type: ignore[attr-defined]
    return out


def run_pipeline(ir: Any, pipeline: str | Sequence[Step], *, verify: bool = True,
                 instruments: Sequence[Instrument] = (), stop_after: str | None = None,
                 repro_dir: str | Path | None = None) -> Any:
    """Run ``pipeline`` on ``ir`` and return the result.

    Args:
        ir: an IR value of the level the pipeline starts at; it is never modified.
        pipeline: a pipeline string (see :mod:`pccc.passes.pipeline`) or parsed steps.
        verify: verify the output of every pass.
        instruments: hooks called around every pass.
        stop_after: stop after the first pass of this name.
        repro_dir: where a failing pass writes ``repro.pcir`` and ``repro.pipeline``
            (None: nowhere).

    Raises:
        PassError: a bad pipeline, or a pass that failed or produced IR that does not verify;
            the message names the pass and the passes run before it.
    """
    steps = (parse_pipeline(pipeline, start_level=level_of(ir)) if isinstance(pipeline, str)
             else list(pipeline))
    if stop_after is not None and stop_after not in [s.name for s in steps]:
        raise PassError(f"--stop-after {stop_after}: no such pass in the pipeline "
                        f"({format_pipeline(steps)})")
    rdir = None if repro_dir is None else Path(repro_dir)
    for ins in instruments:
        ins.run_start(ir)
    for i, step in enumerate(steps):
        for ins in instruments:
            ins.before_pass(i + 1, step.name, ir)
        try:
            out = step.info.fn(ir, **step.options)
        except Exception as e:
            raise _fail(step, steps[:i], "failed", e, ir, steps[i:], rdir) from e
        if verify:
            try:
                if level_of(out) != step.info.output_level:
                    raise VerifyError(f"returned {level_of(out)}, declared "
                                      f"{step.info.output_level}")
                verify_any(out)
            except (VerifyError, PassError) as e:
                raise _fail(step, steps[:i], "produced IR that does not verify", e, ir,
                            steps[i:], rdir) from e
        ir = out
        for ins in instruments:
            ins.after_pass(i + 1, step.name, ir)
        if step.name == stop_after:
            break
    for ins in instruments:
        ins.run_end(ir)
    return ir
