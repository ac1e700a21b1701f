"""``pccc train``: generate a structure, train it with EM, write the best model.

    pccc train --structure hclt --latents 16 --data ../shared/data/debd/nltcs --epochs 50 \\
        -o nltcs.jpc --plot curves.png

``--data`` is a folder with ``*.train.*``, ``*.valid.*``, ``*.test.*`` files, a comma-separated
list of such files, an MNIST-style ``.npz`` or a data set name. Each epoch prints the train and
validation log-likelihood (and bits per dimension for images); training stops early when the
validation log-likelihood has not improved for ``--patience`` epochs. The parameters of the best
epoch are written to ``-o`` at the end, also after Ctrl-C. The first line names the backend,
device and dtype (``backend: triton (cuda, float32)``: on a CUDA device the Triton backend
runs unless ``--backend`` names another); the last line reports the test log-likelihood:
``test log-likelihood: <float>``.

Under ``torchrun --nproc_per_node=K -m pccc train ...`` (the variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR`` set) the K processes train one model data-parallel
(:mod:`pccc.distributed`): gloo on the CPU, NCCL with ``--device cuda`` (rank ``r`` on
``cuda:LOCAL_RANK``); each rank trains on its contiguous part of the training data and every
EM step sums the ranks' statistics; rank 0 prints, validates, shows the progress bar and writes
the model and the plot.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pccc.ir.errors import PcccError

STRUCTURES = ("hclt", "pd", "rat-spn", "hmm")

DESCRIPTION = """\
Generate a structure (or read a circuit file), train it with EM, and write the parameters
of the epoch with the best validation log-likelihood.

  pccc train --structure hclt --latents 16 --data nltcs --epochs 50 -o nltcs.jpc

--data is a folder with *.train.*, *.valid.* and *.test.* files, a comma-separated list of
such files, an MNIST-style .npz or a data set name. Each epoch prints the train and
validation log-likelihood (and bits per dimension for images); training stops early when
the validation log-likelihood has not improved for --patience epochs. The first line names
the backend, device and dtype; the last line reports the test log-likelihood.

Ctrl-C stops training after the current batch and writes the best model so far, then exits
with status 130; more Ctrl-Cs do not interrupt the write.

Under torchrun (torchrun --nproc_per_node=K -m pccc train ... --device cuda) the K processes
train one model data-parallel: each reads its part of the training data, every EM step sums
the statistics of all of them, and rank 0 prints, validates and writes the outputs."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a generated structure with EM",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structure", default="hclt",
                   help=f"{', '.join(STRUCTURES)}, or a circuit file to train (default hclt)")
    p.add_argument("--latents", type=int, default=16, help="hidden states per region")
    p.add_argument("--data", required=True, help="folder, split files, .npz or data set name")
    p.add_argument("--epochs", type=int, default=50, help="most epochs to train")
    p.add_argument("--batch-size", type=int, default=512, help="examples per EM batch")
    p.add_argument("--em", choices=("minibatch", "fullbatch"), default="minibatch",
                   help="minibatch: an EM step per batch; fullbatch: one per epoch")
    p.add_argument("--step-size", type=float, default=0.1,
                   help="mini-batch EM step size (the weight of each step's target)")
    p.add_argument("--pseudocount", type=float, default=0.1,
                   help="EM pseudocount, spread over each node's children or values")
    p.add_argument("--patience", type=int, default=5,
                   help="epochs without a better validation LL before stopping (0: never)")
    p.add_argument("--backend", default=None,
                   help="torch or triton (default: triton on a CUDA device where Triton "
                        "imports, else torch)")
    p.add_argument("--device", default="cpu",
                   help="torch device (under torchrun: cpu, or cuda for cuda:LOCAL_RANK)")
    p.add_argument("--input-dist", default=None,
                   help="categorical, bernoulli, binomial, gaussian or discrete_logistic "
                        "(default: from the data)")
    p.add_argument("--num-cats", type=int, default=None,
                   help="categories per variable (default: from the data)")
    p.add_argument("--depth", type=int, default=3, help="rat-spn: split depth")
    p.add_argument("--repetitions", type=int, default=4, help="rat-spn: repetitions")
    p.add_argument("--split-interval", type=int, default=4, help="pd: split interval")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the structure, the initialization and the batches")
    p.add_argument("--perturb", type=float, default=None, metavar="P",
                   help="redraw sum weights and categorical tables as exp(-P u), normalized "
                        "(PyJuice's initialization; 2 is its default): EM starts faster")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0: one for circuits under a million edges, "
                        "where OpenMP start-up costs more than it saves; else torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True,
                   help="the trained circuit (a writable circuit format: .jpc, .pcir), or "
                        "the trained compiled module (.pccm)")
    p.add_argument("--plot", default=None, help="a PNG of the learning curves")
    p.set_defaults(func=run)


def check_outputs(output: str, plot: str | None) -> None:
    """Refuse output paths that cannot be written, before any training."""
    from pccc import formats

    if not output.lower().endswith(".pccm"):  # a module artifact: pccc.save writes it
        formats.check_writable(output)
    paths = [Path(output)]
    if plot is not None:
        if not plot.lower().endswith(".png"):
            raise PcccError(f"--plot {plot}: the plot must be a .png file")
        paths.append(Path(plot))
    for p in paths:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise PcccError(f"{p}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise PcccError(f"{p}: not writable")
        if p.is_dir():
            raise PcccError(f"{p}: is a folder")


def build_structure(args: argparse.Namespace, ds: Any, device: str | None = None) -> Any:
    """The circuit to train: generated from the options, or read from a file. ``device``:
    where HCLT's mutual information is computed (default: the CPU)."""
    from pccc import structures

    name = args.structure.lower()
    if name not in STRUCTURES:
        if Path(args.structure).exists():
            from pccc.cli.cmd_info import load_verified

            return load_verified(args.structure)
        raise PcccError(f"--structure {args.structure}: not one of {', '.join(STRUCTURES)} "
                        "and no such circuit file")
    cats = args.num_cats or ds.num_cats or 2
    dist = args.input_dist or ("categorical" if ds.num_cats else "gaussian")
    spec = structures.InputSpec.parse(dist, card=cats)
    if name == "hclt":
        return structures.HCLT(ds.train, args.latents, input_dist=spec, seed=args.seed,
                               device=device)
    if name == "pd":
        shape = ds.image_shape or (ds.num_vars,)
        return structures.PD(shape, args.latents, split_intervals=args.split_interval,
                             input_dist=spec, seed=args.seed)
    if name == "rat-spn":
        return structures.RAT_SPN(ds.num_vars, args.latents, args.depth, args.repetitions,
                                  input_dist=spec, seed=args.seed)
    return structures.HMM(ds.num_vars, args.latents, cats, seed=args.seed)


def _set_threads(threads: int, edges: int, device: str) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    elif device == "cpu" and edges < 1_000_000:
        torch.set_num_threads(1)


def _describe(ll: float, image: bool, num_vars: int) -> str:
    from pccc.training import bits_per_dim

    if math.isnan(ll):
        return "n/a"
    return f"{ll:.4f}" + (f" ({bits_per_dim(ll, num_vars):.4f} bpd)" if image else "")


LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


class Launch:
    """The processes training together: those ``torchrun`` started (its variables
    ``LAUNCH_VARS`` set; a ``torch.distributed`` process group joined on :meth:`__enter__`,
    left on exit), or this one alone."""

    def __init__(self, device: str, env: Any = None) -> None:
        from pccc.cli.devices import is_cuda

        env = os.environ if env is None else env
        self.launched = all(v in env for v in LAUNCH_VARS)
        self.rank = int(env["RANK"]) if self.launched else 0
        self.world = int(env["WORLD_SIZE"]) if self.launched else 1
        self.device = device
        self.backend = "nccl" if is_cuda(device) else "gloo"
        if self.launched and is_cuda(device):
            if device != "cuda":
                raise PcccError(f"--device {device}: under torchrun each rank runs on "
                                "cuda:LOCAL_RANK; name the device cuda")
            self.device = f"cuda:{int(env['LOCAL_RANK'])}"

    @property
    def lead(self) -> bool:
        """Whether this process prints and writes (rank 0, or alone)."""
        return self.rank == 0

    def __enter__(self) -> Launch:
        if self.launched:
            import torch

            if self.backend == "nccl":
                torch.cuda.set_device(torch.device(self.device))
            torch.distributed.init_process_group(self.backend)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.launched:
            import torch

            torch.distributed.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    from pccc.cli.devices import check_device

    check_outputs(args.output, args.plot)
    launch = Launch(args.device)
    check_device(launch.device)
    with launch:
        return _run(args, launch)


def _run(args: argparse.Namespace, launch: Launch) -> int:
    import pccc
    from pccc import distributed
    from pccc.cli.devices import default_backend, describe
    from pccc.datasets import load_dataset
    from pccc.files import check_distinct
    from pccc.ir import counts
    from pccc.training import check_data_fits

    backend = args.backend or default_backend(launch.device)
    if launch.lead:
        print(describe(backend, args.device, "float32"), flush=True)
        if launch.launched:
            print(f"data parallel: {launch.world} ranks ({launch.backend})", flush=True)
    ds = load_dataset(args.data)
    check_distinct({"-o": args.output, "--plot": args.plot},
                   {f"--data ({split})": f for split, f in zip(("train", "valid", "test"),
                                                               ds.files) if f})
    t0 = time.perf_counter()
    from pccc.cli.devices import is_cuda

    # HCLT's tree on the training device, as PyJuice computes it; under torchrun every rank
    # builds the structure, and the CPU's estimate is the same on all of them
    circuit = build_structure(args, ds, launch.device if is_cuda(launch.device)
                              and not launch.launched else None)
    if args.perturb is not None:
        if args.perturb < 0:
            raise PcccError(f"--perturb {args.perturb}: must be >= 0")
        from pccc.structures import perturb

        circuit = perturb(circuit, args.perturb, args.seed)
    for arr, fname in zip((ds.train, ds.valid, ds.test), ds.files):
        if arr is not None:
            check_data_fits(arr, circuit, fname)
    k = counts(circuit)
    if launch.lead:
        print(f"structure {args.structure}: {k.nodes} nodes, {k.edges} edges, {k.params} "
              f"parameters ({time.perf_counter() - t0:.1f} s)", flush=True)
    _set_threads(args.threads, k.edges, launch.device)
    model = pccc.compile(circuit, backend=backend, device=launch.device)
    distributed.broadcast_module(model, distributed.group_of())  # (rank 0's start everywhere)
    with Interrupts() as ctrl_c:
        return _train_and_save(model, ds, args, ctrl_c, launch.lead)


class Interrupts:
    """SIGINT (Ctrl-C) while training and saving: every one is counted, none interrupts.
    Training asks :meth:`requested` after each batch and stops; the save that follows runs
    to its end whatever arrives meanwhile. Outside the main thread nothing is installed."""

    def __init__(self) -> None:
        self.count = 0
        self._old: Any = None

    def requested(self) -> bool:
        return self.count > 0

    def _on(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._on)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _secs(t: float) -> str:
    """Seconds with two decimals under 10 s (GPU epochs take a fraction of one), else one."""
    return f"{t:.2f} s" if t < 10 else f"{t:.1f} s"


def _train_and_save(model: Any, ds: Any, args: argparse.Namespace, ctrl_c: Interrupts,
                    lead: bool = True) -> int:
    """Train, write the best model (also after Ctrl-C: exit status 130), report. Under
    torchrun every rank trains on its part of the data; only the ``lead`` one (rank 0)
    validates, prints and writes."""
    import pccc
    from pccc.distributed import shard
    from pccc.training import Stopped, TrainConfig, evaluate, plot_curves, train

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, em=args.em,
                      step_size=args.step_size, pseudocount=args.pseudocount,
                      patience=args.patience, seed=args.seed,
                      progress=lead and not args.no_progress and sys.stderr.isatty(),
                      stop=ctrl_c.requested)
    image = ds.image_shape is not None

    def report(ep: int, h: Any) -> None:
        if lead:
            print(f"epoch {ep}/{cfg.epochs}  train LL "
                  f"{_describe(h.train_ll[-1], image, ds.num_vars)}"
                  f"  valid LL {_describe(h.valid_ll[-1], image, ds.num_vars)}"
                  f"  {_secs(h.seconds[-1])} (validation {_secs(h.valid_seconds[-1])})",
                  flush=True)

    hist = train(model, shard(ds.train), ds.valid if lead else None, cfg, on_epoch=report)
    if not lead:
        return 130 if hist.interrupted or ctrl_c.requested() else 0
    if hist.interrupted:
        print(f"interrupted: writing the best model so far (epoch {hist.best_epoch})",
              file=sys.stderr, flush=True)
    elif hist.stopped_early:
        print(f"early stop: no better validation LL for {cfg.patience} epochs", flush=True)
    pccc.save(model, args.output)
    print(f"wrote {args.output} (best epoch {hist.best_epoch})", flush=True)
    if args.plot and hist.train_ll:
        plot_curves(hist, args.plot, title=f"{args.structure} on {ds.name}",
                    num_vars=ds.num_vars if image else None)
        print(f"wrote {args.plot}", flush=True)
    if hist.interrupted or ctrl_c.requested():
        return 130
    try:
        test = evaluate(model, ds.test, stop=ctrl_c.requested) if ds.test is not None \
            else math.nan
    except Stopped:
        return 130
    print(f"test log-likelihood: {_describe(test, image, ds.num_vars)}", flush=True)
    return 130 if ctrl_c.requested() else 0
