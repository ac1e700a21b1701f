"""Pictures of circuits (``pccc viz``, :mod:`pccc.viz`): DOT text checked against the IR,
collapsed pictures that say so, SVG/PNG/PDF files from matplotlib or a ``dot`` program, and
clear errors when nothing can draw."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pccc import formats
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, InputVector, PcccError, counts
from pccc.ir.layered import num_factors
from pccc.passes import run_pipeline
from pccc.viz import Drawing, draw
from pccc.viz.model import scope_text
from pccc.viz.render import picture_bytes
from tests.strategies import circuits

TO_L2 = "canonicalize,group-blocks,partition-layers"


def tiny():
    """``0.4 * p(x0) p(x1) + 0.6 * q(x0) q(x1)`` over two Bernoulli variables."""
    b = CircuitBuilder()
    x0 = b.input(0, "bernoulli", params=[0.3])
    x1 = b.input(1, "bernoulli", params=[0.6])
    y0 = b.input(0, "bernoulli", params=[0.8])
    y1 = b.input(1, "bernoulli", params=[0.1])
    return b.build(b.sum([b.product([x0, x1]), b.product([y0, y1])], weights=[[0.4, 0.6]]))


#: the DOT text of :func:`tiny`
TINY_DOT = Path(__file__).parent / "golden" / "viz" / "tiny_l0.dot"


def test_dot_of_a_tiny_circuit_is_the_golden_text():
    text = draw(tiny())
    assert isinstance(text, Drawing) and text == TINY_DOT.read_text()


BOX = re.compile(r'^  (\w+) \[label="((?:[^"\\]|\\.)*)"', re.M)
ARROW = re.compile(r'^  (\w+) -> (\w+)(?: \[label="([^"]*)"\])?;$', re.M)


def _boxes(text):
    return {k: v.split("\\n") for k, v in BOX.findall(text)}


def _scope_set(text):
    """The variables of a scope label (``{0, 2..4}``)."""
    out = set()
    for part in text.strip("{}").split(", "):
        lo, _, hi = part.partition("..")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def _scope_by_search(c, i):
    """The variables under vector ``i``, by a walk of its descendants."""
    seen, todo, out = set(), [i], set()
    while todo:
        j = todo.pop()
        if j in seen:
            continue
        seen.add(j)
        nd = c.nodes[j]
        if isinstance(nd, InputVector):
            out.add(nd.var)
        todo.extend(nd.children)
    return out


@settings(max_examples=25, deadline=None)
@given(c=circuits(max_vars=5, max_n=3))
def test_dot_has_a_box_per_vector_and_an_arrow_per_child(c):
    text = draw(c, max_nodes=10_000)
    boxes = _boxes(text)
    arrows = ARROW.findall(text)
    assert len(boxes) == len(c.nodes)
    assert sorted((s, d) for s, d, _ in arrows) == sorted(
        (f"v{ch}", f"v{i}") for i, nd in enumerate(c.nodes) for ch in nd.children)
    for i, nd in enumerate(c.nodes):
        head, scope = boxes[f"v{i}"]
        assert re.fullmatch(rf"%{i} (input \w+|sum|product) \[{nd.n}\]", head)
        assert head.split()[1] == nd.kind
        assert _scope_set(scope) == _scope_by_search(c, i)


def test_scope_text_shortens_wide_scopes():
    assert scope_text({3}) == "{3}"
    assert scope_text(set(range(784))) == "{0..783}"
    assert scope_text({0, 2, 5, 6, 7, 8, 9}) == "{0, 2, 5..9}"
    assert scope_text({0, 1}) == "{0, 1}"
    assert scope_text(set(range(0, 40, 3))) == "14 vars in {0..39}"


def _chain(n_vars):
    """A deep scalar circuit: sums of products peeling one variable each (2 n_vars + ...)."""
    b = CircuitBuilder(rng=0)
    top = b.input(0, "bernoulli")
    for v in range(1, n_vars):
        top = b.sum([b.product([top, b.input(v, "bernoulli")])], n=1)
    return b.build(top)


def test_collapse_above_max_nodes_states_itself_and_keeps_every_vector_and_edge():
    c = _chain(30)
    text = draw(c, max_nodes=20)
    heading = re.search(r'graph \[.*label="([^"]*)"\];', text).group(1)
    assert f"collapsed: {len(c.nodes)} node vectors into" in heading
    boxes = _boxes(text)
    assert 1 < len(boxes) <= 20
    vectors = sum(int(re.match(r"depths? [\d-]+: ([\d,]+) node vectors?", lines[0]).group(1))
                  for lines in boxes.values())
    assert vectors == len(c.nodes)
    inside = sum(int(ln.split()[0]) for lines in boxes.values() for ln in lines
                 if ln.endswith("inside"))
    between = sum(int(lab.split()[0]) for _, _, lab in ARROW.findall(text))
    assert inside + between == sum(len(nd.children) for nd in c.nodes)
    assert "collapsed" not in draw(c, max_nodes=len(c.nodes))


def _labels(text, word):
    return [int(lab.split()[0].replace(",", "")) for _, _, lab in ARROW.findall(text)
            if lab.endswith(word)]


@settings(max_examples=15, deadline=None)
@given(c=circuits(max_vars=4, max_n=3))
def test_layer_schedule_counts_every_layer_sum_edge_and_factor(c):
    l2 = run_pipeline(c, TO_L2)
    text = draw(l2, level="L2")
    boxes = _boxes(text)
    assert sorted(boxes) == sorted(["in0"] + [f"{k}{i}" for i in range(len(l2.layers))
                                              for k in "ps"])
    assert sum(_labels(text, "sum edges") + _labels(text, "sum edge")) == \
        counts(l2.circuit).sum_edges
    lc = l2.circuit
    reads = sum(lc.nodes[ch].n * num_factors(lc, ch) for layer in l2.layers
                for s in layer.sum_order() for ch in lc.nodes[s].children)
    assert sum(_labels(text, "factors") + _labels(text, "factor")) == reads
    assert draw(c, level="L2") == text  # (the L0 circuit lowered by the training pipeline)


def test_plan_picture_counts_the_weights_of_the_source():
    text = draw(tiny(), level="L3")
    assert sum(_labels(text, "weights")) == counts(tiny()).sum_edges
    assert "input layer 0: bernoulli" in text


def test_many_layers_collapse_into_ranges():
    text = draw(_chain(40), level="L2", max_nodes=9)
    assert re.search(r"collapsed: 39 layers into 4 ranges of 10", text)
    assert len(_boxes(text)) <= 9


def test_l4_draws_every_launch_once():
    pytest.importorskip("pccc.ir.schedule")
    from pccc.viz.levels import lower

    sched = lower(tiny(), "L4")
    text = draw(sched, level="L4")
    numbers = re.findall(r"(fwd|bwd) #(\d+)", text)
    assert sorted(numbers) == sorted([("fwd", str(i)) for i in range(len(sched.forward))] +
                                     [("bwd", str(i)) for i in range(len(sched.backward))])
    assert draw(tiny(), level="L4") == text


def test_svg_png_pdf_drawn_by_matplotlib(tmp_path):
    svg = tmp_path / "c.svg"
    draw(tiny(), svg, engine="matplotlib")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t for t in root.itertext())
    assert "%6 sum [1]" in texts and "L0 circuit: 7 node vectors" in texts
    assert picture_bytes(draw(tiny()).picture, "svg", "matplotlib") == svg.read_bytes()
    png = tmp_path / "c.png"
    draw(tiny(), png, level="L2", engine="matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / "c.pdf"
    draw(tiny(), pdf, engine="matplotlib")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert draw(tiny(), tmp_path / "c.dot") == (tmp_path / "c.dot").read_text()


@pytest.fixture
def no_dot(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)


def test_unknown_extension_and_missing_engines_are_clear_errors(tmp_path, no_dot,
                                                                monkeypatch):
    with pytest.raises(PcccError, match=r"cannot draw a \.jpg file .*\.dot, \.svg, \.png"):
        draw(tiny(), tmp_path / "c.jpg")
    with pytest.raises(PcccError, match="'dot' program is not on the PATH"):
        draw(tiny(), tmp_path / "c.svg", engine="dot")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PcccError, match="no Graphviz 'dot' program on the PATH, and "
                                        "matplotlib does not import"):
        draw(tiny(), tmp_path / "c.png")
    draw(tiny(), tmp_path / "c.dot")  # (DOT needs neither)
    assert sorted(os.listdir(tmp_path)) == ["c.dot"]
    assert Drawing(draw(tiny()).picture)._repr_svg_() is None


def test_a_failed_drawing_writes_nothing(tmp_path, monkeypatch):
    import pccc.viz.mpl

    def broken(picture, fmt):
        raise PcccError("broken")

    (tmp_path / "c.svg").write_text("old")
    monkeypatch.setattr(pccc.viz.mpl, "draw_bytes", broken)
    with pytest.raises(PcccError, match="broken"):
        draw(tiny(), tmp_path / "c.svg", engine="matplotlib")
    assert os.listdir(tmp_path) == ["c.svg"] and (tmp_path / "c.svg").read_text() == "old"


def _fake_dot(folder: Path, body: str) -> None:
    """A ``dot`` program on the PATH that runs ``body`` (a shell script)."""
    exe = folder / "dot"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_a_dot_program_on_the_path_draws_from_the_dot_text(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_dot(bin_dir, f'echo "$1" > {tmp_path}/args\ncat > {tmp_path}/stdin\n'
                       'echo "<svg xmlns=\'http://www.w3.org/2000/svg\'/>"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "c.svg"
    drawing = draw(tiny(), out)
    assert (tmp_path / "stdin").read_text() == drawing
    assert (tmp_path / "args").read_text().strip() == "-Tsvg"
    assert ET.parse(out).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert drawing._repr_svg_().startswith("<svg")
    _fake_dot(bin_dir, 'echo "Error: syntax error in line 1" >&2\nexit 1\n')
    with pytest.raises(PcccError, match=r"dot -Tpng failed \(status 1\): Error: syntax error"):
        draw(tiny(), tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_lowered_files_draw_their_source_circuit(tmp_path):
    from pccc.ir.print_lowered import write_pcir_any

    c = tiny()
    path = tmp_path / "l2.pcir"
    write_pcir_any(run_pipeline(c, TO_L2), path)
    assert draw(path) == draw(c)
    assert draw(path, level="L2") == draw(c, level="L2")
    plan = run_pipeline(c, TO_L2 + ",layout-params")
    with pytest.raises(PcccError, match="cannot draw an L3 value at L2"):
        draw(plan, level="L2")
    with pytest.raises(PcccError, match="cannot draw level 'L1'"):
        draw(c, level="L1")


def test_cli_writes_the_picture(tmp_path, capsys):
    src = tmp_path / "c.jpc"
    formats.save(tiny(), src)
    out = tmp_path / "c.dot"
    assert main(["viz", str(src), "-o", str(out), "--level", "L2"]) == 0
    assert out.read_text() == draw(formats.load(src), level="L2")
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    svg = tmp_path / "c.svg"
    assert main(["viz", str(src), "-o", str(svg), "--engine", "matplotlib",
                 "--max-nodes", "3"]) == 0
    assert "collapsed: 7 node vectors" in " ".join(ET.parse(svg).getroot().itertext())


@pytest.mark.parametrize("args, message", [
    (["{bad}", "-o", "{out}.dot"], r"bad\.jpc:\d+"),
    (["{src}", "-o", "{out}.gif"], r"cannot draw a \.gif file"),
    (["{missing}", "-o", "{out}.dot"], "no such file"),
    (["{src}", "-o", "{out}.dot", "--level", "L9"], "invalid choice"),
    (["{src}", "-o", "{out}.dot", "--max-nodes", "0"], "must be an integer >= 1"),
])
def test_cli_errors_in_one_line_without_traceback(tmp_path, capsys, args, message):
    src = tmp_path / "c.jpc"
    formats.save(tiny(), src)
    bad = tmp_path / "bad.jpc"
    bad.write_text(src.read_text().replace("\n", "\nnot a line\n", 2))
    names = {"src": src, "bad": bad, "out": tmp_path / "out", "missing": tmp_path / "no.jpc"}
    assert main(["viz", *[a.format(**names) for a in args]]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    assert not list(tmp_path.glob("out*"))


@given(st.integers(1, 6))
@settings(max_examples=6, deadline=None)
def test_max_nodes_bounds_the_boxes_of_a_deep_circuit(max_nodes):
    c = _chain(12)
    for level in ("L0", "L2"):
        assert len(_boxes(draw(c, level=level, max_nodes=max_nodes))) <= max(max_nodes, 3)


def test_a_compiled_module_draws_its_source_and_its_own_plan(tmp_path):
    import pccc

    model = pccc.compile(tiny(), backend="torch")
    path = tmp_path / "m.pccm"
    pccc.save(model, path)
    assert draw(model) == draw(path) == draw(tiny())
    assert draw(model, level="L3") == draw(path, level="L3") == \
        draw(model.current_plan(), level="L3")


def test_cli_draws_a_plan_file_at_its_own_level(tmp_path):
    from pccc.ir.print_lowered import write_pcir_any

    plan = run_pipeline(tiny(), TO_L2 + ",layout-params")
    path = tmp_path / "plan.pcir"
    write_pcir_any(plan, path)
    out = tmp_path / "plan.dot"
    assert main(["viz", str(path), "-o", str(out)]) == 0
    assert out.read_text() == draw(plan, level="L3")
    assert main(["viz", str(path), "-o", str(out), "--level", "L0"]) == 2
