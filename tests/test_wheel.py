"""A wheel built from the repository holds ``pccc/ir/...`` and friends as real files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info")
#: what a build reads: the project file and the package's sources (links kept as links)
_NEEDED = ("pyproject.toml", "README.md", "pccc", "ir", "passes", "backends")


@pytest.mark.slow
def test_wheel_contains_the_linked_packages(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in _NEEDED:
        if (ROOT / name).is_dir() and not (ROOT / name).is_symlink():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=_SKIP)
        else:
            shutil.copy2(ROOT / name, src / name, follow_symlinks=False)
    assert (src / "pccc" / "ir").is_symlink()  # the layout under test
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("pccc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for need in ["pccc/ir/circuit.py", "pccc/ir/parser.py", "pccc/ir/verify.py",
                 "pccc/backends/reference/evaluate.py", "pccc/passes/__init__.py",
                 "pccc/cli/main.py", "pccc/formats/pcir.py", "pccc/data.py"]:
        assert need in names, need
    assert not any(n.startswith(("ir/", "passes/", "backends/", "tests/")) for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "pccc = pccc.cli.main:main" in zipfile.ZipFile(wheel).read(
        entry[0]).decode()
