"""The command line's behaviour: every option typed and refused up front in one line, help with
ranges and defaults, plugins in every command and from Python, a closed pipe, Ctrl-C in
``pccc train``."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pccc
from pccc import training
from pccc.cli.main import build_parser, main
from pccc.ir import CircuitBuilder

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_of_every_command_has_help_and_its_default():
    for name, parser in _commands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"pccc {name} {action.dest}"
            assert action.help and len(action.help) > 8, where
            if action.option_strings and action.nargs != 0 and not action.required:
                assert "default" in action.help, where


def test_help_states_ranges_and_no_rest_markup(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text
    for piece in ("hidden states per region (an integer in 1..65536; default: 16)",
                  "a number in (0, 1]", "one of categorical, bernoulli, binomial, gaussian",
                  "Ctrl-C stops training"):
        assert piece in " ".join(text.split()), piece


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = (rng.random((120, 4)) < 0.4).astype(int)
    for split, part in (("train", x[:80]), ("valid", x[80:100]), ("test", x[100:])):
        np.savetxt(tmp_path / f"toy.{split}.data", part, fmt="%d", delimiter=",")
    return tmp_path


BAD = [
    ("train", "--latents", "0"), ("train", "--batch-size", "0"), ("train", "--step-size", "2"),
    ("train", "--step-size", "0"), ("train", "--pseudocount", "-1"),
    ("train", "--pseudocount", "nan"), ("train", "--split-interval", "0"),
    ("train", "--input-dist", "poisson"), ("train", "--epochs", "-1"), ("train", "--seed", "-1"),
    ("train", "--device", "gpu"), ("train", "--num-cats", "1"), ("train", "--threads", "-1"),
    ("train", "--perturb", "inf"), ("train", "--backend", "reference"),
    ("train", "--latents", "1e3"), ("train", "--depth", "0"), ("train", "--repetitions", "0"),
    ("eval", "--batch-size", "0"), ("eval", "--device", "tpu"), ("eval", "--dtype", "f16"),
    ("eval", "--backend", "nope"), ("compile", "--backend", "reference"),
    ("compile", "--dtype", "float16"), ("opt", "--elide-above", "-2"), ("demo", "--rows", "1"),
    ("demo", "--vars", "0"), ("demo", "--k", "0"), ("demo", "--seed", "x"),
    ("sample", "--num-samples", "0"),
]


def _argv(cmd: str, tmp_path: Path) -> list[str]:
    src = tmp_path / "c.pcir"
    if not src.exists():
        b = CircuitBuilder(rng=0)
        pccc.save(b.build(b.sum([b.product([b.input(0, "bernoulli", n=2),
                                            b.input(1, "bernoulli", n=2)])])), src)
    return {"train": ["train", "--data", str(tmp_path), "-o", str(tmp_path / "m.jpc")],
            "eval": ["eval", str(src), "--data", str(tmp_path / "x.npy")],
            "compile": ["compile", str(src), "-o", str(tmp_path / "m.pccm")],
            "opt": ["opt", str(src)], "demo": ["demo", "--dir", str(tmp_path / "d")],
            "sample": ["sample", str(src), "-o", str(tmp_path / "s.npy")]}[cmd]


@pytest.mark.parametrize("cmd,option,value", BAD)
def test_bad_option_values_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch,
                                                            cmd, option, value):
    def boom(*a, **k):
        raise AssertionError("the command ran")

    monkeypatch.setattr(training, "train", boom)
    argv = _argv(cmd, tmp_path)
    before = set(tmp_path.rglob("*"))
    assert main([*argv, option, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pccc {cmd}: error: argument ")
    assert option in err[0] and f"got '{value}'" in err[0]
    assert set(tmp_path.rglob("*")) == before


PLUGIN = '''
from pccc.backends import registry
from pccc.backends.torch import build
from pccc.ir import Circuit, SumVector
from pccc.passes import register_pass


@register_pass("square-weights", input_level="L0", output_level="L0")
def square_weights(c: Circuit) -> Circuit:
    """Square every sum weight and renormalize the rows."""
    keys = {nd.param for nd in c.nodes if isinstance(nd, SumVector)}
    return c.with_params({k: c.params[k] ** 2 / (c.params[k] ** 2).sum(1, keepdims=True)
                          for k in keys})


registry.register("twin", build)
'''
PIPE = "canonicalize,square-weights,group-blocks,partition-layers,layout-params"


@pytest.fixture
def unregister():
    """Forget the plugin's pass and backend afterwards (other tests list the passes)."""
    yield
    from pccc.backends import registry
    from pccc.passes.registry import unregister_pass

    unregister_pass("square-weights")
    registry._BACKENDS.pop("twin", None)


def test_plugins_load_in_every_command_and_from_python(tmp_path, capsys, unregister):
    plugin = tmp_path / "squares.py"
    plugin.write_text(PLUGIN)
    src = tmp_path / "c.pcir"
    b = CircuitBuilder(rng=3)
    c = b.build(b.sum([b.product([b.input(0, "bernoulli", n=3), b.input(1, "bernoulli", n=3)])]))
    pccc.save(c, src)
    np.save(tmp_path / "x.npy", np.array([[0, 1], [1, -1]]))
    assert main(["compile", str(src), "-o", str(tmp_path / "m.pccm"), "-p", PIPE, "--load",
                 str(plugin)]) == 0
    assert main(["eval", str(tmp_path / "m.pccm"), "--data", str(tmp_path / "x.npy"),
                 "--backend", "twin", "--load", str(plugin)]) == 0
    assert capsys.readouterr().out.splitlines()[-3] == "backend: twin (cpu, float32)"
    pccc.load_plugin(plugin)  # (a second load: nothing happens)
    model = pccc.compile(c, pipeline=PIPE, backend="twin")
    squared = pccc.compile(c)
    assert not np.allclose(model.current_weights(), squared.current_weights())


def test_a_plugin_that_fails_is_reported_in_one_line(tmp_path, capsys):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    assert main(["info", str(tmp_path / "none.pcir"), "--load", str(plugin)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pccc: error: pass plugin {plugin}: RuntimeError: boom"]


def _pccc(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("PCCC_PLUGINS", None)
    return subprocess.Popen([sys.executable, "-m", "pccc", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_a_closed_pipe_ends_quietly(tmp_path):
    from pccc.cli.cmd_demo import demo_circuit

    pccc.save(demo_circuit(64, 8), tmp_path / "c.pcir")  # (its dumps fill the pipe)
    proc = _pccc("opt", str(tmp_path / "c.pcir"), "--print-after-all", "--elide-above", "-1")
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == "", err


def test_ctrl_c_in_train_writes_the_best_model_and_exits_130(tmp_path):
    out = tmp_path / "m.jpc"
    proc = _pccc("train", "--structure", "hclt", "--latents", "2", "--data",
                 str(_folder(tmp_path)), "--epochs", "100000", "--patience", "0",
                 "--batch-size", "8", "--no-progress", "-o", str(out))
    assert proc.stdout is not None
    while not proc.stdout.readline().startswith("epoch 1/"):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    for _ in range(3):  # (quick Ctrl-Cs: the first stops training, none stops the save)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: writing the best model so far" in err and "Traceback" not in err
    assert f"wrote {out}" in rest
    assert pccc.load(out).num_vars == 4


def test_a_backends_prepare_runs_before_the_passes(monkeypatch):
    """``pccc.compile`` calls a backend's ``prepare`` with the device and options before
    the passes run (the Triton backend starts hashing Triton there), and not for a backend
    registered without one."""
    import pccc.passes
    from pccc.backends import registry
    from pccc.backends.torch import build

    order: list[object] = []
    passes = pccc.passes.compile_plan
    monkeypatch.setattr(pccc.passes, "compile_plan",
                        lambda *a, **k: order.append("passes") or passes(*a, **k))
    registry.register("early", build,
                      prepare=lambda device, **opts: order.append(("prepare", device, opts)))
    try:
        b = CircuitBuilder(rng=3)
        c = b.build(b.sum([b.product([b.input(0, "bernoulli", n=2),
                                      b.input(1, "bernoulli", n=2)])]))
        pccc.compile(c, backend="early", device="cpu")
        registry.register("early", build)  # (again, without one)
        pccc.compile(c, backend="early", device="cpu")
    finally:
        registry._BACKENDS.pop("early", None)
    assert order == [("prepare", "cpu", {}), "passes", "passes"]
