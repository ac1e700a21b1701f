"""HCLT on the 20 binary density-estimation data sets: test log-likelihoods for docs/results.md.

Each data set: an HCLT (Chow-Liu tree from the training split) with ``--latents`` hidden states,
mini-batch EM (``--epochs`` epochs at most, early stopping on validation), then
``--fullbatch-epochs`` epochs of full-batch EM from the best mini-batch parameters, keeping the
best validation epoch. The test log-likelihood is that of the kept parameters.

    python benchmarks/results_debd.py --latents 32 --device cuda --json out/debd.json
    python benchmarks/results_debd.py --from-json out/debd.json   # only write docs/results.md

Results accumulate in the JSON file (a list of runs per data set; a rerun with the same setting
replaces its earlier run), so a long run can be split into several invocations with
``--datasets``, and settings can be compared. The table reports, per data set, the run with the
best *validation* log-likelihood (model selection never looks at the test split); every run is
listed below it. Published numbers are those listed in ``../shared/data/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pccc.datasets import DEBD  # noqa: E402

#: Liu and Van den Broeck, "Tractable Regularization of Probabilistic Circuits", NeurIPS 2021
PUBLISHED_HCLT = {
    "nltcs": -5.999, "msnbc": -6.058, "kdd": -2.183, "plants": -14.263, "baudio": -39.774,
    "jester": -52.463, "bnetflix": -56.278, "accidents": -26.744, "tretail": -10.874,
    "pumsb_star": -23.648, "dna": -79.056, "kosarek": -10.665, "msweb": -9.988,
    "book": -33.833, "tmovie": -50.820, "cwebkb": -152.774, "cr52": -86.260, "c20ng": -153.402,
    "bbc": -251.049, "ad": -16.072,
}
#: UCLA Circuit-Model-Zoo PSDDs, test LL computed in ../shared/data/README.md (17 of 20)
ZOO_PSDD = {
    "accidents": -29.248, "ad": -16.769, "baudio": -41.594, "bbc": -258.053,
    "bnetflix": -58.152, "book": -35.668, "c20ng": -160.927, "cr52": -92.381,
    "cwebkb": -159.970, "jester": -54.430, "kdd": -2.158, "msnbc": -6.052, "msweb": -10.136,
    "nltcs": -6.045, "plants": -13.354, "pumsb_star": -25.128, "tretail": -10.917,
}


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Train one HCLT and return its row of results."""
    import torch

    import pccc
    from pccc.datasets import load_dataset
    from pccc.ir import counts
    from pccc.structures import HCLT
    from pccc.training import TrainConfig, evaluate, train

    torch.manual_seed(args.seed)
    ds = load_dataset(str(Path(args.data) / name) if args.data else name)
    t0 = time.perf_counter()
    circuit = HCLT(ds.train, args.latents, seed=args.seed)
    t_struct = time.perf_counter() - t0
    model = pccc.compile(circuit, backend=args.backend, device=args.device)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, em="minibatch",
                      step_size=args.step_size, pseudocount=args.pseudocount,
                      patience=args.patience, seed=args.seed, progress=False,
                      max_seconds=args.max_seconds)
    h1 = train(model, ds.train, ds.valid, cfg)
    h2 = None
    if args.fullbatch_epochs and not h1.interrupted:
        cfg2 = TrainConfig(epochs=args.fullbatch_epochs, em="fullbatch",
                           pseudocount=args.pseudocount, patience=args.patience,
                           batch_size=max(args.batch_size, 4096), progress=False,
                           max_seconds=args.max_seconds)
        h2 = train(model, ds.train, ds.valid, cfg2)
    test = evaluate(model, ds.test)
    return {
        "dataset": name, "test_ll": test, "valid_ll": max(h1.best_ll, h2.best_ll if h2 else
                                                          -math.inf),
        "minibatch_epochs": len(h1.train_ll), "fullbatch_epochs": len(h2.train_ll) if h2 else 0,
        "edges": counts(circuit).edges, "structure_s": round(t_struct, 2),
        "train_s": round(sum(h1.seconds) + (sum(h2.seconds) if h2 else 0.0), 1),
        "setting": {k: getattr(args, k) for k in ("latents", "epochs", "fullbatch_epochs",
                                                   "batch_size", "step_size", "pseudocount",
                                                   "patience", "max_seconds", "seed",
                                                   "backend", "device")},
    }


def _fmt(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _best(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: r["valid_ll"])


def _ok(r: dict) -> bool:
    """At most 0.1 nats below the published HCLT (or above it)."""
    return r["test_ll"] >= PUBLISHED_HCLT[r["dataset"]] - 0.1


def _row(r: dict) -> str:
    pub = PUBLISHED_HCLT[r["dataset"]]
    return (f"| {r['dataset']} | {_fmt(r['test_ll'])} | {pub:.3f} | {r['test_ll'] - pub:+.3f} "
            f"| {_fmt(ZOO_PSDD.get(r['dataset']))} | {r['setting']['latents']} | "
            f"{r['minibatch_epochs']}+{r['fullbatch_epochs']} | {r['edges']:,} | "
            f"{r['train_s']} |")


HEADER = ["| data set | pccc HCLT | published HCLT | difference | zoo PSDD | latents "
          "| epochs (mini+full) | edges | train s |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]


def write_markdown(results: dict[str, list[dict]], path: Path) -> None:
    """The results table (``docs/results.md``), one row per data set in the usual order."""
    rows = [_best(results[n]) for n in DEBD if results.get(n)]
    close = sum(1 for r in rows if _ok(r))
    lines = [
        "# Results", "",
        "Produced by `benchmarks/results_debd.py` from `benchmarks/results_debd.json` (edit the",
        "script, not this file).", "",
        "## HCLT on the 20 binary density-estimation data sets", "",
        "Test log-likelihood (natural log, mean per example) of a single HCLT trained with EM on",
        "pccc's torch backend, beside the published HCLT (Liu and Van den Broeck, NeurIPS 2021:",
        "12 hidden categories, a mixture of 4 trees, with their soft and entropy regularization)",
        "and the UCLA zoo PSDDs (both as listed in `../shared/data/README.md`). Where a data set",
        "was trained at more than one setting, the row shows the run with the best validation",
        "log-likelihood; all runs are listed further down.", "", *HEADER,
    ]
    lines += [_row(r) for r in rows]
    missing = [n for n in DEBD if not results.get(n)]
    lines += ["", f"At most 0.1 nats below the published HCLT (or better): **{close} of "
              f"{len(rows)}** data sets" + (f" ({len(missing)} not run: {', '.join(missing)})."
                                            if missing else "."), ""]
    lines += _setting_lines([r for n in DEBD for r in results.get(n, [])])
    lines += ["### All runs", "", *HEADER]
    lines += [_row(r) for n in DEBD for r in results.get(n, [])]
    lines += mnist_lines(ROOT / "benchmarks" / "results_mnist.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def mnist_lines(path: Path) -> list[str]:
    """The MNIST section, from the runs recorded in ``results_mnist.json``."""
    if not path.exists():
        return []
    m = json.loads(path.read_text())
    ours, pj = m["pccc"], m["pyjuice"]
    lines = ["", "## MNIST: HCLT with 128 latents", "",
             f"{m['setting']}; both on one {m['card']}, in the same run"
             f"{' (' + m['date'] + ')' if 'date' in m else ''}.", "",
             "| | test bits/dim | train bits/dim per epoch | seconds per epoch |",
             "|---|---:|---|---|"]
    for name, r in ((f"pccc ({ours['backend']} backend)", ours),
                    (f"PyJuice {pj['version']}", pj)):
        lines.append(f"| {name} | {r['test_bpd']:.4f} | "
                     f"{', '.join(f'{v:.4f}' for v in r['train_bpd'])} | "
                     f"{', '.join(str(v) for v in r['epoch_s'])} |")
    lines += ["", f"- pccc: `{ours['command']}` (validation bits/dim per epoch: "
              f"{', '.join(f'{v:.4f}' for v in ours['valid_bpd'])}).",
              f"- PyJuice: `{pj['command']}`."]
    lines += [f"- {note}" for note in m.get("notes", [])]
    return lines


def _setting_lines(rows: list[dict]) -> list[str]:
    settings = {json.dumps(r["setting"], sort_keys=True) for r in rows}
    out = ["### Setting", ""]
    for s in sorted(settings):
        d = json.loads(s)
        names = dict.fromkeys(r["dataset"] for r in rows
                              if json.dumps(r["setting"], sort_keys=True) == s)
        out.append(f"- {', '.join(names)}: latents {d['latents']}, mini-batch EM (batch "
                   f"{d['batch_size']}, step {d['step_size']}, pseudocount {d['pseudocount']}) "
                   f"for at most {d['epochs']} epochs, then up to {d['fullbatch_epochs']} epochs "
                   f"of full-batch EM; early stopping after {d['patience']} epochs without a "
                   f"better validation LL; at most {d['max_seconds']} s per phase; seed "
                   f"{d['seed']}; backend {d['backend']} on {d['device']}.")
    return out + [""]


def load_results(path: Path) -> dict[str, list[dict]]:
    """Runs per data set from the JSON file (a single run may be stored bare)."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {k: v if isinstance(v, list) else [v] for k, v in raw.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DEBD))
    p.add_argument("--data", default=None, help="folder holding the data set folders")
    p.add_argument("--latents", type=int, default=32)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--fullbatch-epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--step-size", type=float, default=0.1)
    p.add_argument("--pseudocount", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results_debd.json"))
    p.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--from-json", action="store_true", help="only rewrite the markdown")
    args = p.parse_args(argv)
    jpath = Path(args.json)
    results = load_results(jpath)
    if not args.from_json:
        for name in [n for n in args.datasets.split(",") if n]:
            row = run_one(name, args)
            runs = [r for r in results.get(name, []) if r["setting"] != row["setting"]]
            results[name] = runs + [row]
            print(json.dumps(row), flush=True)
            jpath.parent.mkdir(parents=True, exist_ok=True)
            jpath.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    write_markdown(results, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
