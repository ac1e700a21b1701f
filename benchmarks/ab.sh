#!/usr/bin/env bash
# Variants of the GPU benchmark side by side on one card, for the notes log's A/B steps.
# Usage (repository root on the GPU machine, .bench/ carried; OUT: a results folder):
#   OUT=$OUT bash benchmarks/ab.sh "TAG|NAME=VALUE ...|WORKLOADS|EXTRA gpu_bench.py ARGS" ...
# e.g.  OUT=$OUT bash benchmarks/ab.sh "graphs|cuda_graphs=true|hclt128,hclt256|--profile" \
#           "eager|cuda_graphs=false|hclt128,hclt256|--profile"
# NAME=VALUE pairs are Triton backend options (backends/triton/options.py; tiles.KEY=N for a
# tile), passed as gpu_bench.py's --option. Each variant runs in its own process into
# $OUT/TAG; one Triton cache serves them all (compile times after the first are warm). To
# compare with an earlier commit, unpack it (`git archive C | tar -x -C DIR`), carry DIR and
# run this script from DIR with `--mnist` pointing at .bench/mnist.npz. Prints each variant's
# kernel-time line (with --profile) and, last, one line per workload.
set -uo pipefail
: "${OUT:?set OUT to a results folder}"
export PYTHONPATH=$PWD
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$(mktemp -d)}
for spec in "$@"; do
  IFS='|' read -r tag opts which extra <<< "$spec"
  mkdir -p "$OUT/$tag"
  args=()
  for o in $opts; do args+=(--option "$o"); done
  # shellcheck disable=SC2086  # extra is a word list
  timeout 300 python3 benchmarks/gpu_bench.py --out "$OUT/$tag" --which "$which" \
    "${args[@]}" $extra > "$OUT/$tag/log.txt" 2>&1 || echo "$tag failed (rc=$?)"
  grep -h "kernel time per batch" "$OUT/$tag/log.txt" | cut -c1-400
done
python3 - "$@" <<'PY'
import json, os, sys
out = os.environ["OUT"]
for spec in sys.argv[1:]:
    tag = spec.split("|")[0]
    try:
        for line in open(f"{out}/{tag}/gpu_bench.jsonl"):
            r = json.loads(line)
            if r.get("kind") == "ours":
                print(f"{tag:14s} {r['name']:8s} epoch {r['epoch_s']:.3f} peak "
                      f"{r['peak_gib']:.2f} 1st batch {r['first_batch_s']:.2f} compile {r['compile_s']:.2f} ll {r['train_ll_epoch2']}")
    except OSError as e:
        print(tag, "no results:", e)
PY
