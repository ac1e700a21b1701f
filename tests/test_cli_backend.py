"""``pccc train`` and ``pccc eval`` pick the Triton backend on a CUDA device (torch where Triton
does not import), keep ``--backend``, and name backend, device and dtype in their first line.
No GPU here: the CUDA check is patched and the compile stops right after the choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pccc
from pccc.cli import devices
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, PcccError

torch.set_num_threads(1)


def test_default_backend():
    assert devices.default_backend("cpu") == "torch"
    assert devices.is_cuda("cuda:1") and not devices.is_cuda("cpu")
    assert devices.default_backend("cuda") == ("triton" if devices.triton_imports() else "torch")


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CUDA device as far as the commands can tell; ``pccc.compile`` records the backend it
    is asked for and stops there."""
    asked: list[str] = []

    def compile_(circuit, backend="torch", **kw):
        asked.append(backend)
        raise PcccError("stopped after the backend choice")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pccc, "compile", compile_)
    return asked


def _data(tmp_path: Path) -> Path:
    x = np.random.default_rng(0).integers(0, 2, (60, 3))
    for split in ("train", "valid", "test"):
        np.savetxt(tmp_path / f"toy.{split}.data", x, fmt="%d", delimiter=",")
    return tmp_path


def _train(tmp_path: Path, *extra: str) -> int:
    return main(["train", "--structure", "hclt", "--latents", "2", "--data", str(_data(tmp_path)),
                 "--epochs", "1", "--no-progress", "-o", str(tmp_path / "m.jpc"), *extra])


@pytest.mark.parametrize("extra, triton_ok, want", [
    ((), True, "triton"), ((), False, "torch"), (("--backend", "torch"), True, "torch"),
])
def test_train_on_cuda_picks_and_names_the_backend(tmp_path, capsys, monkeypatch, fake_cuda,
                                                   extra, triton_ok, want):
    import pccc.structures

    trees: list[object] = []  # where HCLT's mutual information is asked for (the CPU here)
    hclt = pccc.structures.HCLT
    monkeypatch.setattr(pccc.structures, "HCLT",
                        lambda *a, device=None, **k: trees.append(device) or hclt(*a, **k))
    monkeypatch.setattr(devices, "triton_imports", lambda: triton_ok)
    assert _train(tmp_path, "--device", "cuda", *extra) == 2
    assert capsys.readouterr().out.splitlines()[0] == f"backend: {want} (cuda, float32)"
    assert fake_cuda == [want]
    assert trees == ["cuda"]


def test_train_on_the_cpu_runs_torch(tmp_path, capsys):
    assert _train(tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "backend: torch (cpu, float32)" and out[-1].startswith("test log-")


def _circuit_file(tmp_path: Path) -> tuple[Path, Path]:
    b = CircuitBuilder(rng=1)
    x = [b.input(v, "bernoulli", n=2) for v in range(2)]
    path = tmp_path / "c.pcir"
    pccc.save(b.build(b.sum([b.product(x)])), path)
    data = tmp_path / "x.npy"
    np.save(data, np.array([[0, 1], [1, -1]]))
    return path, data


@pytest.mark.parametrize("extra, want", [
    (("--device", "cuda"), "triton (cuda, float32)"),
    (("--device", "cuda", "--backend", "torch", "--dtype", "float64"), "torch (cuda, float64)"),
])
def test_eval_on_cuda_picks_and_names_the_backend(tmp_path, capsys, monkeypatch, fake_cuda,
                                                  extra, want):
    monkeypatch.setattr(devices, "triton_imports", lambda: True)
    path, data = _circuit_file(tmp_path)
    assert main(["eval", str(path), "--data", str(data), *extra]) == 2
    assert capsys.readouterr().out.splitlines()[0] == f"backend: {want}"
    assert fake_cuda == [want.split()[0]]


def test_eval_on_the_cpu_runs_torch_in_float64(tmp_path, capsys):
    path, data = _circuit_file(tmp_path)
    assert main(["eval", str(path), "--data", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "backend: torch (cpu, float64)"
    assert main(["eval", str(path), "--data", str(data), "--backend", "reference"]) == 0
    ref = capsys.readouterr().out.splitlines()
    assert ref[0] == "backend: reference (cpu, float64)"
    assert out[-1].startswith("mean log-likelihood: ")
    assert float(out[-1].split(": ")[1]) == pytest.approx(float(ref[-1].split(": ")[1]),
                                                          rel=1e-12)
