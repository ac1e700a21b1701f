"""PyJuice 2.6.3's training speed and model quality on the benchmark's five workloads.

The workloads, settings and timings of ``../shared/bench/pyjuice_baseline.py`` (HCLT 32/128/256
from the first 20,000 training images with PyJuice's defaults, PD 64/256 over 28x28 with split
intervals 4x4; batch 512, mini-batch EM step 0.1 and pseudocount 0.1 every batch, the 117
batches of the training set in order, CUDA graphs recorded on a dry run when ``PJ_CUDAGRAPH=1``),
plus the test log-likelihood after each epoch (mean over the first 9,728 test images: 19
batches of 512; evaluation time is not counted in the epoch). ``gpu_bench.py --pyjuice`` runs
this in a subprocess, beside pccc in the same command.

Usage: ``PYTHONPATH=/tmp/site python benchmarks/pyjuice_quality.py mnist.npz [--which ...]``.
One JSON line per workload.
"""

import argparse
import json
import os
import time

import numpy as np
import torch

B = 512


def main() -> None:
    import pyjuice as juice

    ap = argparse.ArgumentParser()
    ap.add_argument("mnist")
    ap.add_argument("--which", default="hclt32,hclt128,hclt256,pd64,pd256")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None,
                    help="torch's seed before each workload (structure, initial parameters)")
    a = ap.parse_args()
    cudagraph = os.environ.get("PJ_CUDAGRAPH", "0") == "1"
    dev = torch.device("cuda:0")
    d = np.load(a.mnist)
    xg = torch.from_numpy(d["x_train"].reshape(60000, -1).astype(np.int64)).to(dev)
    xte = torch.from_numpy(d["x_test"].reshape(10000, -1).astype(np.int64)).to(dev)
    n_train, n_test = (xg.shape[0] // B) * B, (xte.shape[0] // B) * B

    def test_ll(pc) -> float:
        with torch.no_grad():
            return sum(float(pc(xte[s:s + B]).double().sum())
                       for s in range(0, n_test, B)) / n_test

    def build(name: str):
        lat = int(name[4:] if name.startswith("hclt") else name[2:])
        if name.startswith("hclt"):
            return juice.structures.HCLT(xg[:20000].float(), num_latents=lat)
        return juice.structures.PD(data_shape=(28, 28), num_latents=lat,
                                   split_intervals=(4, 4), structure_type="sum_dominated")

    for name in a.which.split(","):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if a.seed is not None:
            torch.manual_seed(a.seed)
        t0 = time.time()
        ns = build(name)
        t1 = time.time()
        pc = juice.compile(ns)
        pc.to(dev)
        torch.cuda.synchronize()
        t2 = time.time()
        opt = juice.optim.MiniBatchEM(pc, step_size=0.1, pseudocount=0.1)
        if cudagraph:
            lls = pc(xg[:B], record_cudagraph=True)
            lls.mean().backward()
            pc.init_param_flows(flows_memory=0.0)
        torch.cuda.synchronize()
        t3 = time.time()
        epochs, lls_test = [], []
        for _ in range(a.epochs):
            e0 = time.time()
            for s in range(0, n_train, B):
                lls = pc(xg[s:s + B])
                lls.mean().backward()
                opt.step()
            torch.cuda.synchronize()
            epochs.append(round(time.time() - e0, 3))
            lls_test.append(round(test_ll(pc), 3))
        print(json.dumps(dict(
            kind="pyjuice", name=name, cudagraph=cudagraph, card=torch.cuda.get_device_name(0),
            structure_s=round(t1 - t0, 2), compile_s=round(t2 - t1, 2),
            graph_record_s=round(t3 - t2, 2), epoch_times=epochs,
            first_epoch_s=epochs[0], epoch_s=epochs[-1], test_ll=lls_test,
            peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
            num_edges=int(getattr(pc, "num_edges", -1)))), flush=True)
        del pc, opt, ns


if __name__ == "__main__":
    main()
