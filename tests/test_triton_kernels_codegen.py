"""The Triton backend's kernel table (``backends/triton/codegen.py``): the specs a plan needs,
the module emitted from them against golden files (``tests/golden/triton_kernels``; they are
Python, so ``ruff check tests`` lints them too), ruff on every emitted table, and the table's
names bound to the kernels and constexpr values their specs say.
``PCCC_UPDATE_GOLDEN=1 pytest tests/test_triton_kernels_codegen.py`` rewrites the goldens for
review."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytest.importorskip("triton")
from pccc.backends.triton import codegen  # noqa: E402
from pccc.backends.triton.codegen import SumShape  # noqa: E402
from pccc.ir import CircuitBuilder  # noqa: E402
from pccc.ir.errors import PcccError  # noqa: E402
from pccc.passes import compile_plan  # noqa: E402
from tests.test_triton_backend import _dense_circuit  # noqa: E402

pytestmark = pytest.mark.usefixtures("triton_cache")
GOLDEN = Path(__file__).parent / "golden" / "triton_kernels"


def _wide():
    """Products of 2, 3 and 10 children in one layer: a narrow shape and a wide one."""
    b = CircuitBuilder(rng=np.random.default_rng(4))
    leaves = [b.input(v, "categorical", n=16, card=3) for v in range(15)]
    vecs = [b.sum([b.product(leaves[0:2])], n=16), b.sum([b.product(leaves[2:5])], n=16),
            b.sum([b.product(leaves[5:15]), b.product(leaves[6:15])], n=16)]
    return b.build(b.sum([b.product(vecs)], n=1), num_vars=15)


def _mixed_inputs():
    """Bernoulli, binomial (two totals), Gaussian and indicator inputs under small sums."""
    b = CircuitBuilder(rng=np.random.default_rng(5))
    ins = [b.input(0, "bernoulli", n=4), b.input(1, "binomial", n=4, total=3),
           b.input(2, "binomial", n=4, total=7), b.input(3, "gaussian", n=4),
           b.input(4, "indicator", n=2, card=2)]
    vecs = [b.sum([b.product([leaf])], n=4) for leaf in ins]
    return b.build(b.sum([b.product(vecs)], n=1), num_vars=5)


CASES = {"dense32_tf32": (lambda: _dense_circuit(n=32, card=20), "tf32"),
         "dense64_fp32": (lambda: _dense_circuit(n=64), "fp32"),
         "wide_bf16": (_wide, "bf16"),
         "inputs_tf32": (_mixed_inputs, "tf32")}
_PLANS: dict[str, object] = {}


def _plan(case: str):
    if case not in _PLANS:
        _PLANS[case] = compile_plan(CASES[case][0](), verify=case != "wide_bf16")
    return _PLANS[case]


def _ruff(src: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--stdin-filename",
                           "kernels.py", "-"], input=src, capture_output=True, text=True)


@pytest.mark.parametrize("case", list(CASES))
def test_golden_tables(case):
    precision = CASES[case][1]
    src = codegen.render(codegen.kernel_specs(_plan(case), precision), precision)
    path = GOLDEN / f"{case}.py"
    if os.environ.get("PCCC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src)
    assert path.exists(), f"{path} missing: run with PCCC_UPDATE_GOLDEN=1 and review"
    assert src == path.read_text()


def test_tables_pass_ruff():
    pytest.importorskip("ruff")
    for case, (_, precision) in CASES.items():
        src = codegen.render(codegen.kernel_specs(_plan(case), precision), precision)
        out = _ruff(src)
        assert out.returncode == 0, f"{case}:\n{out.stdout}{out.stderr}"


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 128), C=st.integers(1, 128), fanin=st.integers(1, 40),
       NC=st.integers(1, 9), precision=st.sampled_from(codegen.PRECISIONS))
def test_sum_specs_follow_the_shape(B, C, fanin, NC, precision):
    """Tiles are powers of two covering the shape (at least 16 for a dot); a dot where both
    dimensions are at least 16, in the precision's operands; transposed accumulators exactly
    for dot blocks under 64 rows; one table line per kernel, within ruff's line length. Only
    the forward binds NC (its loop bound) and names it; the backward kernels read it at run
    time."""
    shape = SumShape(B, C, fanin, NC)
    specs = codegen.sum_specs(shape, precision)
    short = f"b{B}_c{C}_f{fanin}"
    assert [s.name for s in specs] == [f"sum_fwd_{short}_n{NC}", f"sum_bwd_{short}",
                                       f"sum_eflow_{short}"]
    for s in specs:
        c = dict(s.constexprs)
        assert (c["B"], c["C"], c["F"]) == (B, C, fanin)
        assert c.get("NC") == (NC if s.name.startswith("sum_fwd") else None)
        for dim, tile in ((B, c["BP"]), (C, c["CP"])):
            assert tile >= dim and tile & (tile - 1) == 0 and (tile < 2 * dim or tile == 16)
        dot = B >= 16 and C >= 16
        assert c["MIX"] == ({"tf32": "tf32", "fp32": "ieee", "bf16": "bf16"}[precision]
                            if dot else "bcast")
        if dot:
            assert min(c["BP"], c["CP"]) >= 16
        if "TRANS" in c:
            assert c["TRANS"] == (dot and B < 64)
    src = codegen.render(specs, precision)
    assert all(len(line) <= codegen.LINE for line in src.splitlines())
    ns: dict[str, object] = {}
    exec(compile(src, "kernels.py", "exec"), ns)  # the table binds every spec's values
    for s in specs:
        assert dict(ns[s.name].constexprs) == dict(s.constexprs)


def test_table_binds_the_kernels_of_its_specs():
    from pccc.backends.triton import kernels_input, kernels_sum
    from pccc.backends.triton.families import binomial
    from pccc.backends.triton.specialized import Specialized

    plan = _plan("inputs_tf32")
    table, src, path = codegen.load_module(plan, "tf32")
    assert path.read_text() == src
    for spec in codegen.kernel_specs(plan, "tf32"):
        obj = getattr(table, spec.name)
        mod = {"kernels_sum": kernels_sum, "kernels_input": kernels_input}.get(spec.kernel.module)
        if not spec.constexprs:
            assert not isinstance(obj, Specialized)
            continue
        assert isinstance(obj, Specialized) and obj.__name__ == spec.name
        if mod is not None:
            assert obj.kernel is getattr(mod, spec.kernel.name)
    fwd = table.input_fwd_binomial_t7
    assert fwd.constexprs["TOTAL"] == 7.0
    assert fwd.constexprs["LOGPROB"] is binomial.logprob_binomial
    assert table.input_bwd_bernoulli.constexprs["CAT"] is False
    assert codegen.load_module(plan, "tf32")[0] is table  # the same table, not a new module


def test_unknown_distribution_and_precision_refused():
    with pytest.raises(PcccError, match=r"no kernel for input distribution 'poisson'"):
        codegen.input_specs("poisson", 0)
    with pytest.raises(PcccError, match=r"precision must be one of tf32, fp32, bf16"):
        codegen.kernel_specs(_plan("dense64_fp32"), "fp16")


@pytest.mark.parametrize("case", list(CASES))
def test_table_holds_every_kernel_the_schedule_launches(case):
    """The table's sum shapes are the L4 schedule's parts' shapes, and every kernel a launch
    of the schedule names is in the table (whatever the small-part threshold)."""
    from pccc.backends.triton.options import DEFAULT_TILES
    from pccc.passes.schedule_kernels import build_schedule

    plan, precision = _plan(case), CASES[case][1]
    specs = codegen.kernel_specs(plan, precision)
    names = {s.name for s in specs}
    for small in (0, 1 << 17):
        s = build_schedule(plan, DEFAULT_TILES, precision=precision, small_part=small)
        assert {p.tag for p in s.parts} == {shape.tag for shape in codegen.sum_shapes(plan)}
        launched = {ln.kernel for ln in (*s.forward, *s.backward) if ln.kernel}
        launched |= {ln.kind for ln in s.backward if ln.kind in ("flow_ratio", "input_cat_dot")}
        assert launched <= names, launched - names


def test_a_table_made_before_is_not_fresh(tmp_path, monkeypatch):
    """``MADE_FRESH`` (whether this process wrote the kernel table, which decides whether the
    compile workers are forked): true for a new cache folder, false for a later process that
    finds the same table there."""
    import sys

    monkeypatch.setenv("PCCC_CACHE_DIR", str(tmp_path))
    plan = _plan("inputs_tf32")
    table, _, path = codegen.load_module(plan, "tf32")
    assert path.is_relative_to(tmp_path) and table.MADE_FRESH is True
    del sys.modules[table.__name__]  # as a second process, whose modules start empty
    again, _, _ = codegen.load_module(plan, "tf32")
    assert again is not table and again.MADE_FRESH is False
