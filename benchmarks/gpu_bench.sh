#!/usr/bin/env bash
# The Triton backend's GPU benchmark on one card, PyJuice 2.6.3 beside it in the same run.
# Usage (repository root, on the GPU machine; .bench/ holds the wheel and mnist.npz):
#   bash benchmarks/gpu_bench.sh [extra gpu_bench.py arguments]
set -euo pipefail
source benchmarks/device_env.sh
python3 benchmarks/gpu_bench.py --pj-site "$SITE" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
