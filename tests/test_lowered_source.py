"""L1 and L2 texts print what they add and name their source circuit: by digest and file,
by digest alone (the reader hands the circuit in), or embedded; every form parses back to an
equal value, and a wrong or missing source is a located error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pccc.formats.pcir import save_pcir
from pccc.ir import CircuitBuilder, ParseError, parse, to_text
from pccc.ir.digest import circuit_digest
from pccc.ir.parse_lowered import read_pcir_any, source_of
from pccc.ir.print_lowered import SourceRef
from pccc.passes import run_pipeline
from tests.strategies import circuits

L1 = "canonicalize,group-blocks{block-size=4,min-block=2,tolerance=0.5}"


def _lowered(c):
    l1 = run_pipeline(c, L1)
    return l1, run_pipeline(l1, "partition-layers")


@given(data=st.data())
def test_every_source_form_parses_back_to_an_equal_value(data, tmp_path_factory):
    c = data.draw(circuits(max_vars=4, max_n=3))
    folder = tmp_path_factory.mktemp("src")
    for ir in _lowered(c):
        src = source_of(ir)
        bare = to_text(ir, source=SourceRef())
        assert "param @" not in bare and "circuit num_vars" not in bare
        assert f'source sha256="{circuit_digest(src)}"' in bare
        assert parse(bare, source=src) == ir
        assert parse(bare, source=ir) == ir  # (a lowered value stands for its source)
        save_pcir(src, folder / "src.pcir")
        named = to_text(ir, source=SourceRef("src.pcir", note="the input"))
        (folder / "x.pcir").write_text(named)
        assert read_pcir_any(folder / "x.pcir") == ir
        assert parse(to_text(ir)) == ir
        assert to_text(parse(bare, source=src), source=SourceRef()) == bare


def _product_root():
    b = CircuitBuilder(rng=3)
    x = [b.input(v, "categorical", n=3, card=2) for v in range(2)]
    return b.build(b.product([b.sum([x[0]], n=3), b.sum([x[1]], n=3)]))


def test_a_wrapped_root_is_stated_not_copied():
    c = _product_root()
    l1, l2 = _lowered(c)
    assert source_of(l1) == run_pipeline(c, "canonicalize")
    text = to_text(l2, source=SourceRef())
    assert "wrap-root %5  // = sum(%4) n=3 param=@__root__, identity weights" in text
    assert "__root__ f64" not in text
    assert parse(text, source=c) == l2


def test_the_l2_text_of_a_small_circuit():
    l1, l2 = _lowered(_product_root())
    digest = circuit_digest(source_of(l2))
    assert to_text(l2, source=SourceRef("c.pcir")) == (
        "pcir 1 L2\n"
        f'source sha256="{digest}" path="c.pcir"\n'
        "wrap-root %5  // = sum(%4) n=3 param=@__root__, identity weights\n"
        "layer 0  // 2 sums in 1 partition: 2 blocks, 2 tiles, 43.8% pad\n"
        "  sums B=4 C=4 [%2, %3]\n"
        "  products fanin=1 runs=2  // 8 elements, 25.0% pad\n"
        "layer 1  // 1 sum in 1 partition: 1 block, 1 tile, 81.2% pad\n"
        "  sums B=4 C=4 [%5]\n"
        "  products fanin=2 runs=1  // 4 elements, 25.0% pad\n")
    assert to_text(l1, source=SourceRef("c.pcir")).splitlines()[3:] == [
        "blocks B=4 C=4 [%2, %3, %5]"]


def test_long_vector_lists_wrap_at_100_characters():
    b = CircuitBuilder(rng=0)
    x = [b.sum([b.input(v, "categorical", n=2, card=3)], n=2) for v in range(60)]
    l1, l2 = _lowered(b.build(b.sum([b.product(x)], n=1)))
    for ir in (l1, l2):
        text = to_text(ir, source=SourceRef())
        assert max(len(line) for line in text.splitlines()[2:]) <= 100
        assert parse(text, source=ir) == ir


def _texts(tmp_path):
    l1, _ = _lowered(_product_root())
    save_pcir(source_of(l1), tmp_path / "src.pcir")
    return l1, to_text(l1, source=SourceRef("src.pcir"))


def test_a_source_with_another_digest_is_refused(tmp_path):
    _, text = _texts(tmp_path)
    wrong = text.replace(text.split('"')[1], "0" * 64)
    with pytest.raises(ParseError, match=r"x.pcir:2:8: source src.pcir has sha256 .*, the "
                                         r"text names 000000000000"):
        parse(wrong, file=str(tmp_path / "x.pcir"))
    with pytest.raises(ParseError, match="the circuit given has sha256"):
        parse(text, source=_other())


def _other():
    b = CircuitBuilder(rng=9)
    return b.build(b.sum([b.input(0, "bernoulli", n=2)], n=1))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(' path="src.pcir"', ""), "2:1: the source circuit .* is named "
                                                  "without a path"),
    (lambda t: t.replace("src.pcir", "gone.pcir"), "2:82: source path gone.pcir: no such "
                                                   "file"),
    (lambda t: t.replace("src.pcir", "x.pcir"), "names itself as its source"),
    (lambda t: t.replace("wrap-root %5", "wrap-root %4"), "3:11: the wrapper is %5"),
    (lambda t: t.splitlines()[0] + "\n" + "\n".join(t.splitlines()[2:]) + "\n",
     "no source circuit: embed"),
    (lambda t: t + "circuit num_vars=1\n%0 = input bernoulli n=1 var=0 param=@p\n",
     "2:1: the source circuit is both embedded and named"),
    (lambda t: t.replace("[%2, %3, %5]", "[%2, %3, %9]"), "4:1: %9: undefined"),
])
def test_source_errors_are_located(tmp_path, edit, message):
    _, text = _texts(tmp_path)
    (tmp_path / "x.pcir").write_text(edit(text))
    with pytest.raises(ParseError, match=message):
        read_pcir_any(tmp_path / "x.pcir")


def test_shapes_the_partitions_do_not_give_are_printed():
    from pccc.ir.blocked import BlockedCircuit
    from pccc.ir.layered import LayeredCircuit

    _, l2 = _lowered(_product_root())
    blocks = dict(l2.blocked.blocks)
    blocks[2] = (2, 2)  # (unverifiable: the partition says 4 x 4)
    odd = LayeredCircuit(BlockedCircuit(l2.circuit, blocks), l2.layers)
    text = to_text(odd, source=SourceRef())
    assert "blocks B=2 C=2 [%2]" in text and text.count("blocks ") == 1
    assert parse(text, source=l2) == odd and parse(to_text(odd)) == odd
