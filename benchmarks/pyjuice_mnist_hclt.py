"""PyJuice 2.6.3's figure for MNIST HCLT: the same setting ``pccc train`` uses for docs/results.md.

    PYTHONPATH=/tmp/site python benchmarks/pyjuice_mnist_hclt.py MNIST.npz --latents 128 --epochs 5

HCLT from the first 20,000 training images (PyJuice's default estimator), mini-batch EM with
batch 512, step 0.1, pseudocount 0.1 over the first 55,000 training images (pccc holds out the
last 5,000 for validation), then the test bits per dimension. Prints one JSON line per epoch.
"""

import argparse
import json
import math
import time

import numpy as np
import pyjuice as juice
import torch

p = argparse.ArgumentParser()
p.add_argument("mnist")
p.add_argument("--latents", type=int, default=128)
p.add_argument("--epochs", type=int, default=5)
a = p.parse_args()
dev = torch.device("cuda:0")
d = np.load(a.mnist)
xtr = torch.from_numpy(d["x_train"].reshape(60000, -1)[:55000].astype(np.int64)).to(dev)
xte = torch.from_numpy(d["x_test"].reshape(10000, -1).astype(np.int64)).to(dev)
ns = juice.structures.HCLT(xtr[:20000].float(), num_latents=a.latents)
pc = juice.compile(ns)
pc.to(dev)
opt = juice.optim.MiniBatchEM(pc, step_size=0.1, pseudocount=0.1)
B = 512


def test_bpd():
    with torch.no_grad():
        tot = sum(float(pc(xte[s:s + B]).sum()) for s in range(0, len(xte), B))
    return -tot / len(xte) / (784 * math.log(2))


for ep in range(1, a.epochs + 1):
    t0 = time.time()
    perm = torch.randperm(len(xtr), device=dev)
    tot = 0.0
    for s in range(0, len(xtr), B):
        lls = pc(xtr[perm[s:s + B]])
        lls.mean().backward()
        opt.step()
        tot += float(lls.detach().sum())
    torch.cuda.synchronize()
    print(json.dumps({"epoch": ep, "train_bpd": -tot / len(xtr) / (784 * math.log(2)),
                      "epoch_s": round(time.time() - t0, 2)}), flush=True)
print(json.dumps({"latents": a.latents, "epochs": a.epochs, "test_bpd": test_bpd()}), flush=True)
