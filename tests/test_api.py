"""The Python API as the issue writes it: load, compile, forward, backward, EM, save."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import pccc
from pccc.backends.reference import log_likelihood
from pccc.ir import CircuitBuilder, PcccError

# tiny tensors: one intra-op thread avoids OpenMP contention on small, busy machines
torch.set_num_threads(1)


def _circuit(seed=11):
    b = CircuitBuilder(rng=seed)
    ins = [b.input(v, "categorical", n=4, card=3) for v in range(4)]
    left = b.sum([b.product(ins[:2])], n=4)
    right = b.sum([b.product(ins[2:])], n=4)
    return b.build(b.sum([b.product([left, right])]))


def _data(n=64, seed=0):
    x = np.random.default_rng(seed).integers(0, 3, size=(n, 4))
    x[:, 1] = x[:, 0]
    x[::5, 2] = -1
    return x


def test_workflow_as_written(tmp_path):
    path = tmp_path / "model.jpc"
    pccc.save(_circuit(), path)
    circuit = pccc.load(path)
    model = pccc.compile(circuit, backend="torch", device="cpu")
    assert isinstance(model, torch.nn.Module)
    x = torch.as_tensor(_data())
    ll = model(x)
    assert ll.shape == (64,) and ll.dtype == torch.float32
    np.testing.assert_allclose(ll.detach().double().numpy(), log_likelihood(circuit, x.numpy()),
                               rtol=1e-5, atol=1e-5)
    ll.mean().backward()
    assert model.sum_logits.grad is not None and model.sum_logits.grad.abs().sum() > 0
    opt = pccc.optim.MiniBatchEM(model, step_size=0.1, pseudocount=0.1)
    opt.step()
    pccc.save(model, tmp_path / "trained.jpc")
    trained = pccc.load(tmp_path / "trained.jpc")
    after = log_likelihood(trained, x.numpy())
    np.testing.assert_allclose(model(x).detach().double().numpy(), after, rtol=1e-5, atol=1e-5)
    assert after.mean() > ll.mean().item()


def test_adam_trains_out_of_the_box():
    model = pccc.compile(_circuit(), dtype=torch.float64)
    x = torch.as_tensor(_data(128))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = -model(x).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 0.2
    ref = log_likelihood(model.to_circuit(), x.numpy()).mean()  # still a normalized circuit
    assert ref == pytest.approx(-loss.item(), abs=0.05)


def test_float64_selectable_and_to_dtype():
    c = _circuit()
    x = _data()
    m64 = pccc.compile(c, dtype="float64")
    assert m64(torch.as_tensor(x)).dtype == torch.float64
    m = pccc.compile(c).to(torch.float64)  # parameters were rounded to float32 on compile
    assert m(torch.as_tensor(x)).dtype == torch.float64
    np.testing.assert_allclose(m(torch.as_tensor(x)).detach().numpy(), log_likelihood(c, x),
                               rtol=1e-6)


def test_errors_are_pccc_errors():
    with pytest.raises(PcccError, match="unknown backend"):
        pccc.compile(_circuit(), backend="nope")
    with pytest.raises(PcccError, match="reference"):
        pccc.compile(_circuit(), backend="reference")
    with pytest.raises(PcccError):
        pccc.save(object(), "x.jpc")


def test_import_pccc_does_not_import_torch():
    code = "import sys, pccc; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_eval_torch_backend_matches_reference(tmp_path, capsys):
    from pccc.cli.main import main

    src = tmp_path / "c.pcir"
    pccc.save(_circuit(), src)
    data = tmp_path / "x.npy"
    np.save(data, _data())
    outs = []
    for backend in ("reference", "torch"):
        assert main(["eval", str(src), "--data", str(data), "--backend", backend,
                     "--dtype", "float64"] if backend == "torch" else
                    ["eval", str(src), "--data", str(data)]) == 0
        outs.append(float(capsys.readouterr().out.strip().splitlines()[-1].split(":")[1]))
    assert outs[0] == pytest.approx(outs[1], rel=1e-10)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_to_cuda_trains_and_saves(tmp_path):
    c = _circuit()
    x = _data()
    model = pccc.compile(c, dtype="float64").to("cuda")
    ll = model(torch.as_tensor(x, device="cuda"))
    assert ll.device.type == "cuda"
    np.testing.assert_allclose(ll.detach().cpu().numpy(), log_likelihood(c, x), rtol=1e-10)
    ll.mean().backward()
    cpu = pccc.compile(c, dtype="float64")
    cpu(torch.as_tensor(x)).mean().backward()
    np.testing.assert_allclose(model.sum_logits.grad.cpu().numpy(),
                               cpu.sum_logits.grad.numpy(), rtol=1e-9, atol=1e-12)
    for m in (model, cpu):
        pccc.optim.MiniBatchEM(m, step_size=0.5, pseudocount=0.1).step()
    pccc.save(model, tmp_path / "gpu.pcir")
    pccc.save(model, tmp_path / "gpu.pccm")
    np.testing.assert_allclose(log_likelihood(pccc.load(tmp_path / "gpu.pcir"), x),
                               log_likelihood(cpu.to_circuit(), x), rtol=1e-9)
    back = pccc.load_module(tmp_path / "gpu.pccm", device="cuda")
    np.testing.assert_allclose(back(torch.as_tensor(x)).detach().cpu().numpy(),
                               log_likelihood(cpu.to_circuit(), x), rtol=1e-9)
