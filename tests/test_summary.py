"""Summaries of every level: ``pccc info FILE`` of L0-L3 files and ``.pccm`` modules,
``pccc opt --stats`` after every pass, L2 and L3 counting every layer the same way, one screen
for a large circuit."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pccc.cli.main import main
from pccc.formats.pcir import save_pcir
from pccc.ir import CircuitBuilder
from pccc.ir.print_lowered import SourceRef, write_pcir_any
from pccc.ir.printer import to_text
from pccc.ir.stats import (
    ProductStats,
    SumStats,
    layer_stats,
    product_partition_stats,
    sum_partition_stats,
)
from pccc.ir.summary import summary_lines
from pccc.passes import run_pipeline
from tests.strategies import circuits

L1 = "canonicalize,group-blocks{block-size=4,min-block=2,tolerance=0.5}"


@given(data=st.data())
def test_l2_and_l3_count_every_layer_alike(data):
    c = data.draw(circuits(max_vars=4, max_n=4))
    l2 = run_pipeline(run_pipeline(c, L1), "partition-layers")
    plan = run_pipeline(l2, "layout-params")
    pairs = zip(plan.layers[0::2], plan.layers[1::2])
    for layer, (prod, sl) in zip(l2.layers, pairs, strict=True):
        sums, prods = layer_stats(l2, layer)
        s3, p3 = SumStats(), ProductStats()
        for sp in sl.partitions:
            s3.add(sum_partition_stats(plan, sp))
        for pp in prod.partitions:
            p3.add(product_partition_stats(pp))
        sums.vectors = 0
        assert (sums, prods) == (s3, p3)
    assert _table(summary_lines(l2)) == _table(summary_lines(plan))


def _table(lines):
    return lines[next(i for i, line in enumerate(lines) if line.startswith("  layer parts")):]


def _circuit():
    b = CircuitBuilder(rng=0)
    x = [b.sum([b.input(v, "categorical", n=8, card=3)], n=8) for v in range(3)]
    return b.build(b.sum([b.product(x)], n=1))


def test_info_reads_every_level_and_a_module(tmp_path, capsys):
    c = _circuit()
    save_pcir(c, tmp_path / "c.pcir")
    l1 = run_pipeline(c, L1)
    l2 = run_pipeline(l1, "partition-layers")
    (tmp_path / "l1.pcir").write_text(to_text(l1, source=SourceRef("c.pcir")))
    write_pcir_any(l2, tmp_path / "l2.pcir")
    write_pcir_any(run_pipeline(l2, "layout-params"), tmp_path / "l3.pcir")
    want = {"c": ["level:        L0 circuit", "smooth:       yes"],
            "l1": ["level:        L1 blocked", "sum vectors:  4 in 2 tile shapes", "  B=4 C=4:"],
            "l2": ["level:        L2 layered", "layers:       2", "    all     2"],
            "l3": ["level:        L3 kernel plan", "node buffer:  ", "    all     2"]}
    for name, pieces in want.items():
        assert main(["info", str(tmp_path / f"{name}.pcir")]) == 0
        out = capsys.readouterr().out
        for piece in pieces:
            assert piece in out, (name, piece)


def test_info_of_a_module_summarizes_its_plan_and_source(tmp_path, capsys):
    save_pcir(_circuit(), tmp_path / "c.pcir")
    assert main(["compile", str(tmp_path / "c.pcir"), "-o", str(tmp_path / "m.pccm")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "m.pccm")]) == 0
    out = capsys.readouterr().out
    assert "level:        L3 kernel plan" in out and "source circuit:" in out
    assert "decomposable: yes" in out


def test_opt_stats_follow_every_pass(tmp_path, capsys):
    save_pcir(_circuit(), tmp_path / "c.pcir")
    assert main(["opt", str(tmp_path / "c.pcir"), "--stats", "-o",
                 str(tmp_path / "out.pcir")]) == 0
    err = capsys.readouterr().err
    heads = re.findall(r"^// ----- stats (.*) ----- //$", err, re.M)
    assert heads == ["of the input", "after canonicalize (pass 1)", "after group-blocks (pass 2)",
                     "after partition-layers (pass 3)", "after layout-params (pass 4)"]
    levels = re.findall(r"^level: +(L\d)", err, re.M)
    assert levels == ["L0", "L0", "L1", "L2", "L3"]


def test_a_deep_circuit_fits_one_screen():
    b = CircuitBuilder(rng=None)
    node = b.sum([b.input(0, "categorical", n=4, card=2)], n=4)
    for v in range(1, 40):  # a chain: 40 layers
        node = b.sum([b.product([node, b.input(v, "categorical", n=4, card=2)])], n=4)
    plan = run_pipeline(b.build(node), "default")
    lines = summary_lines(plan)
    assert len(lines) <= 40 and max(map(len, lines)) <= 100
    assert any(re.match(r"\s+0-2 ", line) for line in lines)
    assert np.all([len(line) for line in lines])
