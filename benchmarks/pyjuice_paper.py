"""PyJuice 2.6.3's side of ``bench_paper.py``: one structure, in its own process.

    PYTHONPATH=<pyjuice site> python benchmarks/pyjuice_paper.py SPEC_JSON DATA.npy
        [--mode paper|trial] [--epochs E] [--batches N] [--batch B] [--no-cudagraph]

``SPEC_JSON`` is a :class:`paper_structures.Structure`'s ``spec()``; ``DATA.npy`` holds the
examples (``uint8 [N, V]``, kept on the GPU as such; each batch is converted to int64). PD is
``juice.structures.PD``; HCLT is ``juice.structures.HCLT`` of the first ``tree_examples``
examples (its own mutual information and tree, on the GPU). After ``juice.compile`` and
``.to(device)``, CUDA graphs are recorded on a dry run (as PyJuice's own examples do; off with
``--no-cudagraph``). ``paper`` mode times ``E`` mini-batch EM epochs (step 0.1, pseudocount
0.1, one step per batch of ``B``) and ``E`` full-batch EM epochs (flows of every batch
accumulated, then one step with step size 1); ``trial`` mode times ``N`` mini-batch EM batches
after the dry run. Running out of GPU memory gives ``"status": "OOM"`` and the stage it
happened in. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_paper import Run, cap_memory  # noqa: E402
from paper_structures import Structure, pyjuice_counts  # noqa: E402


def _build(s: Structure, xg: torch.Tensor, tree_examples: int):
    import pyjuice as juice

    if s.kind == "pd":
        return juice.structures.PD(data_shape=s.shape, num_latents=s.latents,
                                   split_intervals=s.split_intervals,
                                   max_prod_block_conns=s.max_prod_block_conns,
                                   structure_type="sum_dominated")
    return juice.structures.HCLT(xg[:tree_examples].float(), num_latents=s.latents)


def run(r: Run, s: Structure, a: argparse.Namespace) -> None:
    import pyjuice as juice
    from pyjuice.optim import FullBatchEM, MiniBatchEM

    dev, xg = r.xg.device, r.xg
    ns = r.stage("structure", lambda: _build(s, xg, a.tree_examples))
    se, pe = pyjuice_counts(ns)
    r.row.update(sum_edges=se, product_edges=pe, edges=se + pe)
    torch.cuda.reset_peak_memory_stats()
    pc = r.stage("compile", lambda: juice.compile(ns).to(dev))
    r.row["num_edges_compiled"] = int(getattr(pc, "num_edges", -1))

    def dry_run() -> None:
        lls = pc(r.batch_at(0), record_cudagraph=a.cudagraph)
        lls.mean().backward()
        pc.init_param_flows(flows_memory=0.0)

    r.stage("first_batch", dry_run)

    def step(i: int, opt) -> torch.Tensor:  # noqa: ANN001
        lls = pc(r.batch_at(i))
        lls.mean().backward()
        if opt is not None:
            opt.step()
        return lls.detach().mean()

    mb = MiniBatchEM(pc, step_size=0.1, pseudocount=0.1)
    if a.mode == "trial":
        r.trial(lambda i: step(i, mb), a.batches)
        return
    r.epochs("minibatch", lambda i: step(i, mb), None, a.epochs)
    fb = FullBatchEM(pc, pseudocount=0.1)
    r.epochs("fullbatch", lambda i: step(i, None), fb.step, a.epochs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec")
    ap.add_argument("data")
    ap.add_argument("--mode", default="paper", choices=["paper", "trial"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--tree-examples", type=int, default=20000)
    ap.add_argument("--no-cudagraph", dest="cudagraph", action="store_false")
    ap.add_argument("--gib", type=float, default=0.0, help="GPU memory cap (0: the card's own)")
    a = ap.parse_args()
    cap_memory(a.gib)
    s = Structure.from_spec(json.loads(a.spec))
    xg = torch.from_numpy(np.load(a.data)).to("cuda:0")
    r = Run(dict(kind="pyjuice", structure=s.name, spec=s.spec(), mode=a.mode,
                 cudagraph=a.cudagraph, card=torch.cuda.get_device_name(0)), xg, a.batch)
    print(json.dumps(r.execute(lambda: run(r, s, a))), flush=True)


if __name__ == "__main__":
    main()
