"""Output files: modes follow the umask or the replaced file, symbolic and hard links survive,
a failed write leaves nothing, left-over temporary files are cleaned, an output is never an
input."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

import pccc
from pccc.cli.main import main
from pccc.files import atomic_write
from pccc.ir import CircuitBuilder, PcccError


def _circuit():
    b = CircuitBuilder(rng=1)
    return b.build(b.sum([b.product([b.input(0, "bernoulli", n=2),
                                     b.input(1, "categorical", n=2, card=3)])]))


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_a_new_file_follows_the_umask(tmp_path, umask):
    for mask, want in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        umask(mask)
        out = tmp_path / f"c{mask}.jpc"
        pccc.save(_circuit(), out)
        assert _mode(out) == want


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    out = tmp_path / "c.pcir"
    out.write_text("old")
    out.chmod(0o640)
    umask(0o077)
    pccc.save(_circuit(), out)
    assert _mode(out) == 0o640 and out.read_text().startswith("pcir")


def test_a_symbolic_link_is_written_through(tmp_path):
    target = tmp_path / "real.pcir"
    target.write_text("old")
    link = tmp_path / "link.pcir"
    link.symlink_to(target.name)
    pccc.save(_circuit(), link)
    assert link.is_symlink() and os.readlink(link) == target.name
    assert target.read_text().startswith("pcir")


def test_hard_links_keep_seeing_the_file(tmp_path):
    a = tmp_path / "a.pcir"
    a.write_text("old")
    b = tmp_path / "b.pcir"
    os.link(a, b)
    pccc.save(_circuit(), a)
    assert os.stat(a).st_nlink == 2 and os.path.samefile(a, b)
    assert b.read_text() == a.read_text() and b.read_text().startswith("pcir")


def test_a_failing_writer_leaves_the_target_and_no_temporary_file(tmp_path):
    out = tmp_path / "x.bin"
    out.write_bytes(b"keep")
    with pytest.raises(RuntimeError), atomic_write(out) as f:
        f.write(b"partial")
        raise RuntimeError("writer failed")
    assert out.read_bytes() == b"keep" and sorted(tmp_path.iterdir()) == [out]


def test_a_folder_as_output_is_named_as_such(tmp_path):
    folder = tmp_path / "out.pcir"
    folder.mkdir()
    with pytest.raises(PcccError, match=f"^{folder}: is a folder$"):
        pccc.save(_circuit(), folder)
    with pytest.raises(PcccError, match="out.pcir: is a folder"), atomic_write(folder) as f:
        f.write(b"x")


def test_sidecar_output_is_both_files_or_neither(tmp_path, capsys):
    src = tmp_path / "c.jpc"
    pccc.save(_circuit(), src)
    (tmp_path / "out.pcir").mkdir()
    assert main(["convert", str(src), str(tmp_path / "out.pcir"), "--sidecar"]) == 2
    assert "out.pcir: is a folder" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert main(["convert", str(src), str(tmp_path / "ok.pcir"), "--sidecar"]) == 0
    assert (tmp_path / "ok.npz").exists() and (tmp_path / "ok.pcir").exists()


def test_left_over_temporary_files_are_cleaned_but_not_a_live_writers(tmp_path):
    out = tmp_path / "c.pcir"
    old = time.time() - 60
    stale = tmp_path / ".c.pcir.k3j_9x0a.tmp"  # (a writer killed before it renamed)
    live = tmp_path / ".c.pcir.abcdefgh.tmp"  # (a writer still at work)
    foreign = tmp_path / ".c.pcir.not-ours.tmp"
    for p in (stale, live, foreign):
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        pccc.save(_circuit(), out)
    finally:
        os.close(fd)
    assert not stale.exists() and live.exists() and foreign.exists()


def test_an_output_that_is_an_input_is_refused(tmp_path, capsys):
    src = tmp_path / "c.pcir"
    pccc.save(_circuit(), src)
    data = tmp_path / "x.npy"
    x = np.array([[0, 1], [1, 2]])
    np.save(data, x)
    alias = tmp_path / "alias.npy"
    alias.symlink_to(data.name)
    mod = tmp_path / "m.pccm"
    pccc.save(pccc.compile(_circuit()), mod)
    (tmp_path / "toy").mkdir()
    split = tmp_path / "toy" / "toy.train.data"
    for name in ("train", "valid", "test"):
        (tmp_path / "toy" / f"toy.{name}.data").write_text("0,1\n1,2\n")
    cases = [
        ["eval", str(src), "--data", str(data), "--out", str(data)],
        ["eval", str(src), "--data", str(data), "--out", str(alias)],
        ["eval", str(mod), "--data", str(data), "--out", str(mod)],
        ["convert", str(src), str(src)],
        ["convert", str(src), str(tmp_path / "c2.pcir"), "--sidecar"],
        ["compile", str(mod), "-o", str(mod)],
        ["opt", str(src), "-o", str(src)],
        ["query", str(src), "--data", str(data), "--mpe", "-o", str(data)],
        ["train", "--data", str(split.parent), "-o", str(tmp_path / "m.jpc")],
    ]
    (tmp_path / "m.jpc").symlink_to(split)  # (-o onto a data split, under another name)
    (tmp_path / "c2.npz").symlink_to(src.name)  # (the sidecar would be written over IN)
    before = {p: p.read_bytes() for p in (src, data, mod, split)}
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "the same file as" in err and "Traceback" not in err, (argv, err)
    assert {p: p.read_bytes() for p in before} == before
