#!/usr/bin/env bash
# Sourced by the GPU scripts (repository root, on the GPU machine; .bench/ holds PyJuice's wheel
# and mnist.npz): installs PyJuice 2.6.3 into $SITE, stubs tqdm and matplotlib where absent
# (PyJuice imports them), gives cold Triton and pccc caches and sets PYTHONPATH.
SITE=/tmp/site
if [ -f .bench/pyjuice-2.6.3-py3-none-any.whl ] && [ ! -d "$SITE/pyjuice" ]; then
  pip install -q --no-deps --target "$SITE" .bench/pyjuice-2.6.3-py3-none-any.whl
fi
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
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
