"""``pccc opt`` dumps without copies: ``--dump-dir`` shares sidecar arrays by content and its
L1 and L2 files name their source circuit's file; ``--print-after-all`` names the L0 dump
above; ``--embed-source`` copies the source instead. Every file reads back to the value."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np

from pccc.cli.main import main
from pccc.formats.pcir import save_pcir
from pccc.ir import CircuitBuilder, parse
from pccc.ir.parse_lowered import read_pcir_any
from pccc.passes import run_pipeline
from pccc.passes.instruments import DumpDir


def _big():
    """A circuit with more than 4096 parameters (sidecars), whose root is a product."""
    b = CircuitBuilder(rng=0)
    x = [b.sum([b.input(v, "categorical", n=16, card=64)], n=16) for v in range(4)]
    return b.build(b.product([b.product(x[:2]), b.product(x[2:])]))


def _members(folder):
    """sha256 of every array stored in the folder's sidecars, with where it is."""
    out = []
    for f in sorted(folder.glob("*.npz")):
        with zipfile.ZipFile(f) as z:
            out += [(hashlib.sha256(z.read(n)).hexdigest(), f.name, n) for n in z.namelist()]
    return out


def test_dump_dir_shares_sidecars_and_names_sources(tmp_path):
    c = _big()
    dump = tmp_path / "d"
    pipeline = "canonicalize,group-blocks,partition-layers,layout-params"
    out = run_pipeline(c, pipeline, instruments=[DumpDir(dump)])
    names = sorted(p.name for p in dump.iterdir() if not p.name.startswith("."))
    assert names == ["000_input.npz", "000_input.pcir", "001_canonicalize.pcir",
                     "002_group_blocks.pcir", "003_partition_layers.pcir",
                     "004_layout_params.npz", "004_layout_params.pcir"]
    hashes = [h for h, _, _ in _members(dump)]
    assert len(hashes) == len(set(hashes)), "an array is stored twice"
    canon = (dump / "001_canonicalize.pcir").read_text()
    assert 'npz "000_input.npz"' in canon
    for name in ("002_group_blocks", "003_partition_layers"):
        text = (dump / f"{name}.pcir").read_text()
        assert 'path="001_canonicalize.pcir"' in text and "param @" not in text
    values = [read_pcir_any(dump / n) for n in names if n.endswith(".pcir")]
    expect = [c] + [run_pipeline(c, ",".join(pipeline.split(",")[:k])) for k in (1, 2, 3)]
    assert values[:4] == expect and values[4] == out


def test_a_lowered_input_gets_its_source_file(tmp_path):
    c = run_pipeline(_big(), "canonicalize")
    l1 = run_pipeline(c, "group-blocks")
    dump = tmp_path / "d"
    run_pipeline(l1, "partition-layers", instruments=[DumpDir(dump)])
    assert (dump / "000_input_source.pcir").exists()
    assert 'path="000_input_source.pcir"' in (dump / "001_partition_layers.pcir").read_text()
    assert read_pcir_any(dump / "000_input.pcir") == l1


def test_print_after_all_names_the_dump_above_and_embeds_on_request(tmp_path, capsys):
    src = tmp_path / "c.pcir"
    save_pcir(_big(), src)
    assert main(["opt", str(src), "--print-after-all", "--stop-after", "partition-layers"]) == 0
    out = capsys.readouterr().out
    assert out.count("param @") == len(run_pipeline(_big(), "canonicalize").params)
    assert out.count("// the L0 dump after canonicalize (pass 1) above") == 2
    plan = str(tmp_path / "plan.pcir")
    assert main(["opt", str(src), "--print-after", "group-blocks", "-o", plan]) == 0
    assert "// not printed here" in capsys.readouterr().out
    assert main(["opt", str(src), "--print-after", "group-blocks", "--embed-source",
                 "-o", plan]) == 0
    embedded = capsys.readouterr().out.split("\n", 1)[1]
    assert "source sha256" not in embedded
    assert parse(embedded) == run_pipeline(_big(), "canonicalize,group-blocks")


def test_dump_dir_embed_source_writes_standalone_files(tmp_path):
    dump = tmp_path / "d"
    run_pipeline(_big(), "canonicalize,group-blocks", instruments=[DumpDir(dump,
                                                                           embed_source=True)])
    text = (dump / "002_group_blocks.pcir").read_text()
    assert "source sha256" not in text and "circuit num_vars" in text
    assert isinstance(read_pcir_any(dump / "002_group_blocks.pcir").circuit.params["__root__"],
                      np.ndarray)
