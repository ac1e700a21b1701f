#!/usr/bin/env bash
# The Triton backend's GPU benchmark on one card, PyJuice 2.6.3 beside it in the same run.
# Usage (repository root, on the GPU machine; .bench/ holds the wheel, pyjuice_baseline.py and
# mnist.npz):  bash benchmarks/gpu_bench.sh [extra gpu_bench.py arguments]
set -euo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SITE=/tmp/site
if [ -f .bench/pyjuice-2.6.3-py3-none-any.whl ] && [ ! -d "$SITE/pyjuice" ]; then
  pip install -q --no-deps --target "$SITE" .bench/pyjuice-2.6.3-py3-none-any.whl
fi
# PyJuice imports tqdm (and its visualize module matplotlib); stub them where absent
for mod in tqdm matplotlib; do
  if ! python3 -c "import $mod" 2>/dev/null; then
    mkdir -p "$SITE/$mod"
    if [ "$mod" = tqdm ]; then
      printf 'def tqdm(it=None, *a, **k):\n    return it\n' > "$SITE/tqdm/__init__.py"
    else
      : > "$SITE/matplotlib/__init__.py"; : > "$SITE/matplotlib/pyplot.py"
    fi
  fi
done
export TRITON_CACHE_DIR=$(mktemp -d)   # cold Triton cache: compile times include the JIT
export PCCC_CACHE_DIR=$(mktemp -d)
export PYTHONPATH=$PWD:$SITE
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_bench.py --pj-site "$SITE" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
