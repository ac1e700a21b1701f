"""Draw ``docs/queries.png``: an HCLT trained on MNIST by ``pccc train``, its samples, and the
bottom halves of test digits completed by MPE and by conditional sampling beside the originals.

The HCLT (16 latents, categorical(256) pixels) is trained on the CPU for one epoch of
mini-batch EM (about two minutes on two cores), unless ``--model`` names a trained circuit
already. The queries run on the torch backend (:mod:`pccc.query`): 16 unconditional samples
(seed 0); for one test image of each digit 0-7, the max-product completion of its bottom 14
rows and one sample of them given the top 14 (seed 1).

Run: ``python docs/make_query_figure.py [--mnist ../shared/data/mnist/mnist.npz]
[--model trained.jpc] [-o docs/queries.png]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = 28
TOP = SIDE // 2  # rows given as evidence


def train(mnist: str, latents: int, epochs: int, out: Path) -> None:
    """``pccc train`` of an HCLT on the CPU, written to ``out``."""
    cmd = [sys.executable, "-m", "pccc", "train", "--structure", "hclt", "--latents",
           str(latents), "--data", mnist, "--epochs", str(epochs), "--seed", "0",
           "--no-progress", "-o", str(out)]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def queries(model_path: Path, mnist: str) -> dict[str, np.ndarray]:
    """Samples, the chosen test digits, their evidence and both completions, ``[n, 784]``."""
    import torch

    import pccc
    from pccc import query

    torch.manual_seed(0)
    model = pccc.compile(pccc.load(model_path), backend="torch")
    d = np.load(mnist)
    xte = d["x_test"].reshape(len(d["x_test"]), -1).astype(np.int64)
    pick = [int(np.flatnonzero(d["y_test"] == k)[0]) for k in range(8)]
    orig = xte[pick]
    ev = orig.copy()
    ev[:, TOP * SIDE:] = -1
    mpe, _ = query.mpe(model, ev)
    return {"samples": query.sample(model, 16, seed=0).numpy(), "original": orig,
            "evidence": ev, "mpe": mpe.numpy(),
            "conditional": query.sample(model, len(ev), evidence=ev, seed=1).numpy()}


def draw(res: dict[str, np.ndarray], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("samples", res["samples"][:8]), ("", res["samples"][8:]),
            ("original", res["original"]), ("top half given", res["evidence"]),
            ("MPE", res["mpe"]), ("conditional\nsample", res["conditional"])]
    fig, axes = plt.subplots(len(rows), 8, figsize=(8.4, 6.6),
                             gridspec_kw={"hspace": 0.08, "wspace": 0.05})
    for r, (label, imgs) in enumerate(rows):
        for c in range(8):
            ax = axes[r, c]
            img = imgs[c].reshape(SIDE, SIDE).astype(float)
            shown = np.ma.masked_less(img, 0)  # missing pixels: the colour map's "bad" grey
            cmap = matplotlib.colormaps["gray"].with_extremes(bad="#7fa7c9")
            ax.imshow(shown, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            if r >= 3:
                ax.axhline(TOP - 0.5, color="#d0412f", lw=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("HCLT (16 latents, 1 epoch of pccc train) on MNIST: samples, and bottom "
                 "halves\ncompleted by MPE and by conditional sampling (pccc.query)",
                 fontsize=10)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    print(f"wrote {out} ({os.path.getsize(out) // 1024} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist" /
                                           "mnist.npz"))
    ap.add_argument("--model", default=None, help="a trained circuit (default: train one)")
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "queries.png"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else Path(tmp) / "hclt.jpc"
        if not model.exists():
            train(os.path.abspath(a.mnist), a.latents, a.epochs, model)
        draw(queries(model, a.mnist), a.output)


if __name__ == "__main__":
    main()
