"""Draw the pictures of ``docs/usage.md`` (Pictures) with :func:`pccc.viz.draw`.

- ``docs/viz-small.svg``: the node vectors (L0) of a small RAT-SPN: 4 Bernoulli variables,
  4 latents, depth 1, 2 repetitions (seed 0);
- ``docs/viz-hclt-layers.svg``: the layer schedule (L2) of an HCLT with 16 latents learned
  from NLTCS's training data (16 variables; seed 0).

The engine is ``auto``: Graphviz's ``dot`` where it is on the PATH, matplotlib otherwise
(``--engine`` chooses).

Run: ``python docs/make_viz_figures.py [--data ../shared/data/debd/nltcs/nltcs.train.data.gz]
[--engine auto|dot|matplotlib] [--out-dir docs]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NLTCS = ROOT.parent / "shared" / "data" / "debd" / "nltcs" / "nltcs.train.data.gz"


def small_circuit():
    """A RAT-SPN over 4 Bernoulli variables: 4 latents, depth 1, 2 repetitions (seed 0)."""
    from pccc.structures import RAT_SPN

    return RAT_SPN(4, 4, 1, 2, input_dist="bernoulli", seed=0)


def hclt(data: str):
    """An HCLT with 16 latents from the first 2,000 rows of ``data`` (seed 0)."""
    from pccc.data import load_data
    from pccc.structures import HCLT

    x = np.asarray(load_data(data))[:2000]
    return HCLT(x, num_latents=16, seed=0)


def main() -> None:
    import pccc.viz

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(NLTCS))
    ap.add_argument("--engine", default="auto", choices=("auto", "dot", "matplotlib"))
    ap.add_argument("--out-dir", default=str(ROOT / "docs"))
    a = ap.parse_args()
    out = Path(a.out_dir)
    jobs = [("viz-small.svg", small_circuit(), "L0"),
            ("viz-hclt-layers.svg", hclt(a.data), "L2")]
    for name, circuit, level in jobs:
        pccc.viz.draw(circuit, out / name, level=level, engine=a.engine)
        print(f"wrote {out / name} ({os.path.getsize(out / name) // 1024} KB)")


if __name__ == "__main__":
    main()
