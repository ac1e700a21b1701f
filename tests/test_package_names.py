"""What a plain ``import pccc`` gives: the names users reach for, submodules on first use, no
torch, and ``pccc.ir.parse`` of every level's dump without ``pccc.passes``. Each check runs in
a fresh interpreter, so that nothing this test session imported can hide a missing import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pccc
from pccc.cli.main import main
from pccc.ir import CircuitBuilder

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path = ROOT) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_pccc_gives_the_names_and_no_torch():
    out = _python(
        "import importlib.util, sys\n"
        "import pccc\n"
        "assert 'torch' not in sys.modules, 'import pccc imported torch'\n"
        "assert issubclass(pccc.ir.VerifyError, pccc.PcccError)\n"
        "assert callable(pccc.structures.HCLT) and callable(pccc.optim.MiniBatchEM)\n"
        "if importlib.util.find_spec('pccc.query') is None:\n"
        "    assert not hasattr(pccc, 'query')\n"
        "else:\n"
        "    assert pccc.query.__name__ == 'pccc.query'\n"
        "try:\n"
        "    pccc.no_such_module\n"
        "except AttributeError as e:\n"
        "    print(e, e.__context__)\n")
    assert out.strip() == "module 'pccc' has no attribute 'no_such_module' None"


def _circuit(path: Path) -> None:
    b = CircuitBuilder(rng=0)
    x = [b.input(v, "categorical", n=4, card=3) for v in range(3)]
    p = b.product([b.sum([x[0]], n=4), b.product(x[1:])])
    pccc.save(b.build(b.sum([p])), path)


def test_parse_every_level_without_the_passes(tmp_path):
    _circuit(tmp_path / "c.pcir")
    assert main(["opt", str(tmp_path / "c.pcir"), "--dump-dir", str(tmp_path / "dump"),
                 "--elide-above", "-1", "-o", str(tmp_path / "plan.pcir")]) == 0
    dumps = sorted((tmp_path / "dump").glob("*.pcir"))
    levels = {p.read_text().split("\n", 1)[0] for p in dumps}
    assert {"pcir 1 L1", "pcir 1 L2", "pcir 1 L3"} <= levels
    out = _python(
        "import sys, pathlib\n"
        "import pccc\n"
        f"for p in sorted(pathlib.Path({str(tmp_path / 'dump')!r}).glob('*.pcir')):\n"
        "    text = p.read_text()\n"
        "    value = pccc.ir.parse(text, file=str(p))\n"
        "    assert pccc.ir.parse(pccc.ir.to_text(value)) == value, p\n"
        "    print(value.level)\n"
        "assert 'pccc.passes' not in sys.modules\n")
    assert {"L1", "L2", "L3"} <= set(out.split())


@pytest.mark.parametrize("level", ["L5", "L"])
def test_unknown_level_names_the_known_ones(level):
    from pccc.ir import ParseError, parse

    with pytest.raises(ParseError, match=r"unknown IR level .* \(known: L0, L1, L2, L3, L4\)"):
        parse(f"pcir 1 {level}\n")
