"""Edge counts and generation times of pccc's HCLT and PD beside PyJuice 2.6.3's structures.

    python benchmarks/structure_counts.py [--mnist PATH] [--pyjuice]

Workloads of ``../shared/bench/pyjuice_baseline.py``: HCLT with 32/128/256 latents on the first
20,000 MNIST training images (784 categorical variables, 256 categories), PD over 28x28 with
split intervals 4x4 and 64/256 latents. Edges are counted as PyJuice counts them: sum edges
(node x child) plus product edges (node x factor). ``--pyjuice`` also builds PyJuice's own
structures (it must be importable, e.g. from the wheel on ``PYTHONPATH``) and counts the same
way over its node graph, before ``juice.compile`` adds pass-through layers. One JSON line per
workload.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pyjuice_counts(root) -> tuple[int, int]:  # noqa: ANN001
    """(sum edges, product edges) over a PyJuice node graph."""
    from pyjuice.nodes import ProdNodes, SumNodes

    se = pe = 0
    for ns in root:
        if isinstance(ns, SumNodes):
            se += int(ns.num_edges)
        elif isinstance(ns, ProdNodes):
            pe += int(ns.num_nodes * ns.num_chs)
    return se, pe


def ours(name: str, build) -> dict:  # noqa: ANN001
    from pccc.ir import counts

    t0 = time.perf_counter()
    c = build()
    dt = time.perf_counter() - t0
    k = counts(c)
    return {"workload": name, "who": "pccc", "seconds": round(dt, 2), "sum_edges": k.sum_edges,
            "product_edges": k.product_edges, "edges": k.edges, "vectors": k.vectors}


def theirs(name: str, build) -> dict:  # noqa: ANN001
    t0 = time.perf_counter()
    ns = build()
    dt = time.perf_counter() - t0
    se, pe = pyjuice_counts(ns)
    return {"workload": name, "who": "pyjuice-2.6.3", "seconds": round(dt, 2), "sum_edges": se,
            "product_edges": pe, "edges": se + pe}


def main(argv: list[str] | None = None) -> int:
    from pccc.structures import HCLT, PD

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist" /
                                          "mnist.npz"))
    p.add_argument("--pyjuice", action="store_true")
    p.add_argument("--mi-estimator", default="binned", choices=["binned", "pyjuice"],
                   help="pccc HCLT's mutual information (pyjuice: 159 s per tree on 2 cores)")
    p.add_argument("--uniform", action="store_true",
                   help="uniform parameters (broadcast views: no parameter memory)")
    args = p.parse_args(argv)
    x = np.load(args.mnist)["x_train"][:20000].reshape(20000, -1).astype(np.int64)
    seed = None if args.uniform else 0
    rows = []
    for lat in (32, 128, 256):
        rows.append(ours(f"HCLT-L{lat}", lambda lat=lat: HCLT(x, lat, num_cats=256, seed=seed,
                                                       mi_estimator=args.mi_estimator)))
    for lat in (64, 256):
        rows.append(ours(f"PD-L{lat}", lambda lat=lat: PD((28, 28), lat, split_intervals=(4, 4),
                                                  num_cats=256, seed=seed)))
    if args.pyjuice:
        import pyjuice as juice
        import torch

        dev = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        xt = torch.from_numpy(x).to(dev).float()
        for lat in (32, 128, 256):
            rows.append(theirs(f"HCLT-L{lat}", lambda lat=lat: juice.structures.HCLT(xt, lat)))
        for lat in (64, 256):
            rows.append(theirs(f"PD-L{lat}", lambda lat=lat: juice.structures.PD(
                data_shape=(28, 28), num_latents=lat, split_intervals=(4, 4),
                structure_type="sum_dominated")))
    for r in rows:
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
