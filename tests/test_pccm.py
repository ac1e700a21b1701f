"""``.pccm`` compiled-module artifacts: round trips, and refusal of bad files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

import pccc
from pccc.backends.reference import log_likelihood
from pccc.cli.main import main
from pccc.ir import CircuitBuilder, PcccError

# tiny tensors: one intra-op thread avoids OpenMP contention on small, busy machines
torch.set_num_threads(1)


def _circuit():
    b = CircuitBuilder(rng=5)
    a = b.input(0, "categorical", n=3, card=3)
    c = b.input(1, "bernoulli", n=3)
    s = b.sum([b.product([a, c])], n=2)
    d = b.input(2, "binomial", n=2, total=4)
    return b.build(b.sum([b.product([s, d])]))


X = np.array([[0, 1, 3], [2, -1, -1], [-1, 0, 4], [1, 1, 0]])


def _trained(dtype=torch.float64):
    model = pccc.compile(_circuit(), dtype=dtype)
    model(torch.as_tensor(X)).sum().backward()
    pccc.optim.MiniBatchEM(model, step_size=0.7, pseudocount=0.3).step()
    return model


def test_roundtrip_keeps_parameters_dtype_and_source(tmp_path):
    model = _trained()
    path = tmp_path / "m.pccm"
    pccc.save(model, path)
    back = pccc.load_module(path)
    assert back.dtype == torch.float64
    want = log_likelihood(model.to_circuit(), X)
    np.testing.assert_allclose(back(torch.as_tensor(X)).detach().numpy(), want, rtol=1e-12)
    assert back.pipeline == model.pipeline
    pccc.save(back, tmp_path / "back.pcir")
    np.testing.assert_allclose(log_likelihood(pccc.load(tmp_path / "back.pcir"), X), want,
                               rtol=1e-12)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind


def test_archive_holds_only_json_and_npy(tmp_path):
    path = tmp_path / "m.pccm"
    pccc.save(_trained(), path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
    assert all(n in ("manifest.json", "checksums.json") or n.endswith(".npy") for n in names)
    assert manifest["format"] == "pccm" and manifest["pccc_version"] == pccc.__version__
    assert "canonicalize" in manifest["pipeline"]


def test_float_arrays_are_stored_and_the_rest_deflated(tmp_path):
    """Parameters (floating point) are stored uncompressed (deflate gets through them at a
    few MB/s); text and index arrays are deflated. Both read back."""
    path = tmp_path / "m.pccm"
    model = _trained()
    pccc.save(model, path)
    with zipfile.ZipFile(path) as z:
        methods = {}
        for info in z.infolist():
            if info.filename.endswith(".npy"):
                kind = np.load(io.BytesIO(z.read(info)), allow_pickle=False).dtype.kind
                methods.setdefault(kind, set()).add(info.compress_type)
            else:
                assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
    assert methods["f"] == {zipfile.ZIP_STORED}
    assert "i" in methods
    assert all(m == {zipfile.ZIP_DEFLATED} for k, m in methods.items() if k != "f"), methods
    back = pccc.load_module(path)
    assert torch.equal(back(torch.as_tensor(X)), model(torch.as_tensor(X)))


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(tmp_path, cut):
    path = tmp_path / "m.pccm"
    pccc.save(_trained(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(PcccError, match="m.pccm"):
        pccc.load_module(path)


def _rewrite(path, fn):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members = fn(members)
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)


def test_other_version_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "m.pccm"
    pccc.save(_trained(), path)

    def bump(m):
        man = json.loads(m["manifest.json"])
        man["format_version"], man["pccc_version"] = 99, "9.9"
        return dict(m, **{"manifest.json": json.dumps(man).encode()})

    _rewrite(path, bump)
    with pytest.raises(PcccError, match=r"pccc 9\.9.*recompile"):
        pccc.load_module(path)


def test_pickled_member_and_missing_member_are_refused(tmp_path):
    path = tmp_path / "m.pccm"
    pccc.save(_trained(), path)

    def pickled(m):
        name = next(n for n in m if n.endswith(".npy"))
        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        return dict(m, **{name: buf.getvalue()})

    _rewrite(path, pickled)
    with pytest.raises(PcccError, match="corrupt"):
        pccc.load_module(path)
    _rewrite(path, lambda m: {k: v for k, v in m.items() if k != "manifest.json"})
    with pytest.raises(PcccError, match="missing"):
        pccc.load_module(path)


def test_cli_compile_writes_a_loadable_module(tmp_path, capsys):
    src = tmp_path / "c.pcir"
    pccc.save(_circuit(), src)
    out = tmp_path / "c.pccm"
    assert main(["compile", str(src), "-o", str(out), "--dtype", "float64"]) == 0
    model = pccc.load_module(out)
    np.testing.assert_allclose(model(torch.as_tensor(X)).detach().numpy(),
                               log_likelihood(_circuit(), X), rtol=1e-12)
    assert main(["compile", str(src), "-o", str(tmp_path / "x.npy")]) == 2
    assert main(["compile", str(src), "-o", str(out), "--backend", "nope"]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_eval_runs_a_compiled_module(tmp_path, capsys):
    src = tmp_path / "c.pcir"
    pccc.save(_circuit(), src)
    mod = tmp_path / "c.pccm"
    assert main(["compile", str(src), "-o", str(mod), "--dtype", "float64"]) == 0
    data = tmp_path / "x.npy"
    np.save(data, X)
    capsys.readouterr()
    want = float(np.mean(log_likelihood(_circuit(), X)))
    for extra, backend in (([], "torch"), (["--backend", "reference"], "reference")):
        assert main(["eval", str(mod), "--data", str(data), *extra]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].startswith(f"backend: {backend} (cpu, float64)")
        assert float(lines[-1].split(":")[1]) == pytest.approx(want, rel=1e-10)
    bad = tmp_path / "bad.pccm"
    bad.write_bytes(b"not a zip")
    assert main(["eval", str(bad), "--data", str(data)]) == 2
    assert "bad.pccm" in capsys.readouterr().err


def test_cli_info_describes_a_compiled_module(tmp_path, capsys):
    out = tmp_path / "m.pccm"
    pccc.save(_trained(), out)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "backend:      torch" in text and "dtype:        float64" in text
    assert "KernelPlan v1: 3 vars" in text
    # the source circuit's own summary follows: 3 variables, smooth and decomposable
    assert "variables:    3" in text and "decomposable: yes" in text
    (tmp_path / "bad.pccm").write_bytes(out.read_bytes()[:100])
    assert main(["info", str(tmp_path / "bad.pccm")]) == 2
    assert "truncated" in capsys.readouterr().err
