"""The pass manager: registry, pipeline strings, level checks, instruments, failure reports."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from pccc.backends.reference import log_likelihood
from pccc.backends.reference.lowered import evaluate_any
from pccc.ir import Circuit, CircuitBuilder, PassError
from pccc.ir.parse_lowered import parse_any
from pccc.passes import run_pipeline
from pccc.passes.instruments import MARKER, DumpDir, PrintAfter, TimePasses
from pccc.passes.pipeline import format_pipeline, parse_pipeline
from pccc.passes.registry import get_pass, register_pass, unregister_pass


def small() -> Circuit:
    b = CircuitBuilder(rng=3)
    a = b.input(0, "categorical", n=3, card=3)
    c = b.input(1, "categorical", n=3, card=3)
    p = b.product([a, c])
    s = b.sum([p], n=2)
    q = b.product([s, b.input(2, "bernoulli", n=2)])
    return b.build(b.sum([q], n=1))


def test_options_are_converted_from_annotations():
    steps = parse_pipeline("canonicalize{merge-sum-chains=true},group-blocks{block-size=32,"
                           "tolerance=0.5},partition-layers,layout-params")
    assert steps[0].options == {"merge_sum_chains": True}
    assert steps[1].options == {"block_size": 32, "tolerance": 0.5}
    assert isinstance(steps[1].options["block_size"], int)
    assert format_pipeline(steps) == ("canonicalize{merge-sum-chains=true},group-blocks{"
                                      "block-size=32,tolerance=0.5},partition-layers,"
                                      "layout-params")


@pytest.mark.parametrize("text, message", [
    ("canonicalise", r"unknown pass 'canonicalise' \(passes: canonicalize, group-blocks"),
    ("group-blocks{blocksize=3}", r"no option 'blocksize' \(options: block-size, min-block"),
    ("group-blocks{block-size=big}", r"block-size='big' is not a valid int"),
    ("canonicalize{merge-sum-chains=maybe}", r"not a valid bool"),
    ("group-blocks{block-size}", r"needs a value"),
    ("partition-layers", r"reads L1 but the input gives L0"),
    ("canonicalize,layout-params", r"'layout-params' reads L2 but canonicalize gives L0"),
    ("canonicalize,", r"ends with ','"),
    ("canonicalize{{", r"malformed pipeline"),
])
def test_bad_pipelines_are_refused_before_anything_runs(text, message):
    with pytest.raises(PassError, match=message):
        parse_pipeline(text, start_level="L0")


def test_registering_checks_the_signature():
    with pytest.raises(ValueError, match="kebab-case"):
        register_pass("Bad_Name", input_level="L0", output_level="L0")
    with pytest.raises(TypeError, match="keyword-only"):
        @register_pass("bad-positional", input_level="L0", output_level="L0")
        def bad(c: Circuit, k: int = 1) -> Circuit:
            return c
    with pytest.raises(TypeError, match="annotation"):
        @register_pass("bad-annotation", input_level="L0", output_level="L0")
        def bad2(c: Circuit, *, k: list = None) -> Circuit:  # type: ignore[assignment]
            return c


def test_builtin_pass_names_match_their_modules():
    for name in ("canonicalize", "group-blocks", "partition-layers", "layout-params"):
        info = get_pass(name)
        assert info.fn.__module__ == "pccc.passes." + name.replace("-", "_")
        assert info.summary and all(o.help for o in info.options)


def test_print_after_all_dumps_parse_back(tmp_path):
    c = small()
    buf = io.StringIO()
    out = run_pipeline(c, "default", instruments=[PrintAfter(None, buf, elide_above=None)])
    pieces = re.split(r"^// ----- IR dump after .*$", buf.getvalue(), flags=re.M)[1:]
    assert len(pieces) == 4
    x = np.array([[0, 1, 1], [2, -1, 0], [-1, -1, -1]])
    ref = log_likelihood(c, x)
    source = None
    for piece in pieces:  # (L1 and L2 dumps name the L0 dump above them as their source)
        ir = parse_any(piece, source=source)
        source = ir if ir.level == "L0" else source
        np.testing.assert_allclose(evaluate_any(ir, x), ref, rtol=1e-12)
    assert parse_any(pieces[-1]) == out


def test_dump_dir_writes_numbered_files_and_refuses_foreign_ones(tmp_path):
    d = tmp_path / "dumps"
    run_pipeline(small(), "training", instruments=[DumpDir(d)])
    names = sorted(p.name for p in d.iterdir())
    assert names == [MARKER, "000_input.pcir", "001_canonicalize.pcir",
                     "002_group_blocks.pcir", "003_partition_layers.pcir",
                     "004_layout_params.pcir"]
    plan = parse_any((d / "004_layout_params.pcir").read_text(), base_dir=d)
    assert plan.level == "L3"
    DumpDir(d)  # its own files: cleared and reused
    assert sorted(p.name for p in d.iterdir()) == [MARKER]
    (d / "notes.txt").write_text("mine")
    with pytest.raises(PassError, match="refusing to clear"):
        DumpDir(d)
    other = tmp_path / "other"
    other.mkdir()
    (other / "001_x.pcir").write_text("not written by pccc")
    with pytest.raises(PassError, match="refusing to clear"):
        DumpDir(other)
    assert (other / "001_x.pcir").exists() and (d / "notes.txt").exists()


def test_time_passes_and_stop_after():
    timer = TimePasses()
    out = run_pipeline(small(), "training", instruments=[timer], stop_after="group-blocks")
    assert out.level == "L1"
    assert [n for n, _ in timer.times] == ["canonicalize", "group-blocks"]
    assert "group-blocks" in timer.report()
    with pytest.raises(PassError, match="no such pass"):
        run_pipeline(small(), "training", stop_after="nope")


def test_a_failing_pass_names_itself_and_writes_a_repro(tmp_path):
    @register_pass("explode", input_level="L1", output_level="L1")
    def explode(bc, *, when: int = 1):
        """Fail on purpose."""
        raise RuntimeError("boom")

    try:
        with pytest.raises(PassError) as err:
            run_pipeline(small(), "canonicalize,group-blocks,explode{when=2},partition-layers",
                         repro_dir=tmp_path)
        msg = str(err.value)
        assert "pass 'explode' failed: boom" in msg
        assert "passes run before it: canonicalize,group-blocks" in msg
        assert (tmp_path / "repro.pipeline").read_text().strip() == \
            "explode{when=2},partition-layers"
        repro = parse_any((tmp_path / "repro.pcir").read_text())
        assert repro.level == "L1"
    finally:
        unregister_pass("explode")


def test_output_that_does_not_verify_is_reported():
    @register_pass("break-blocks", input_level="L1", output_level="L1")
    def break_blocks(bc):
        """Drop the block shapes."""
        from pccc.ir.blocked import BlockedCircuit

        return BlockedCircuit(bc.circuit, {})

    try:
        with pytest.raises(PassError, match="'break-blocks' produced IR that does not verify"):
            run_pipeline(small(), "canonicalize,group-blocks,break-blocks")
        run_pipeline(small(), "canonicalize,group-blocks,break-blocks", verify=False)
    finally:
        unregister_pass("break-blocks")


def test_user_pass_runs_in_a_pipeline():
    @register_pass("scale-weights", input_level="L0", output_level="L0")
    def scale_weights(c: Circuit, *, factor: float = 2.0) -> Circuit:
        """Multiply every sum weight by a factor."""
        from pccc.ir.circuit import SumVector

        keys = {nd.param for nd in c.nodes if isinstance(nd, SumVector)}
        return c.with_params({k: c.params[k] * factor for k in keys})

    try:
        c = small()
        out = run_pipeline(c, "scale-weights{factor=3},default")
        x = np.array([[0, 1, 1]])
        depth = 2  # two sum layers on every path: log(3) per layer
        np.testing.assert_allclose(evaluate_any(out, x), log_likelihood(c, x) +
                                   depth * np.log(3.0), rtol=1e-12)
    finally:
        unregister_pass("scale-weights")
