#!/usr/bin/env bash
# The GPU measurements the open work needs, by name, each under its own time limit, all output
# under $OUT (default /tmp/out). Run on the GPU machine from the repository root, with .bench/
# holding PyJuice's wheel and mnist.npz (benchmarks/device_env.sh):
#
#   bash benchmarks/gpu_suite.sh queries seeds        # the named steps, in the order given
#   bash benchmarks/gpu_suite.sh --list               # the steps and their limits
#   NODES_COMBOS="true" bash benchmarks/gpu_suite.sh nodes   # flows_in_nodes on only
#   LONEWARPS_WHICH=hclt256 bash benchmarks/gpu_suite.sh lonewarps
#
# A step that runs past its limit is stopped; what it printed and wrote stands, and the next
# step runs. The last lines are one status line per step.
set -uo pipefail

declare -A LIMIT=(
  [gate]=330 [queries]=420 [seeds]=500 [fanin]=240 [warm]=200 [kinds]=240 [paper]=560
  [scale]=560 [scalepj]=560 [workers]=240 [mnist]=200 [trees]=360 [nodes]=320 [variants]=300 [nodekinds]=200
  [gputests]=300 [epoch1]=200 [lonewarps]=240 [fallback]=200 [mempeak]=150
)
declare -A WHAT=(
  [gate]="gpu_bench.py --check --pyjuice: speed, memory and quality beside PyJuice, all five"
  [queries]="bench_queries.py --pyjuice: samples, conditionals and MPE per second, HCLT-256 and PD-256"
  [seeds]="gpu_bench.py --seeds 0,1,2 on the HCLTs, both sides: the 2-epoch test LL's mean and spread"
  [fanin]="gpu_bench.py on all five, round_fanin off, then on, cold caches each: first batch and epoch"
  [warm]="gpu_bench.py --warm on HCLT-128 and PD-64: the start-up of a second process"
  [kinds]="kernel_kinds.py on HCLT-256 and PD-256: time, TFLOP/s and GB/s per kernel kind"
  [paper]="bench_paper.py: the PyJuice paper's PD-mid and HCLT-mid over 32x32x3, both sides"
  [scale]="bench_paper.py --scale, ours (float32 plan weights, flows in nodes): PD over 28x28 from 1536 latents, HCLT from 2560, to the first failure (80 GB cap)"
  [scalepj]="bench_paper.py --scale, PyJuice: PD from 1280 latents, HCLT from 1024, to the first failure (80 GB cap)"
  [workers]="gpu_bench.py on HCLT-32/128 and PD-64 without compile workers (jit_workers=0), then with 16 (the default)"
  [mnist]="pccc train (HCLT-128, 3 epochs) and PyJuice's MNIST script: docs/results.md's row"
  [trees]="tree_quality.py: HCLT-32, soft tree (GPU, CPU) and PyJuice's; tf32/fp32/torch; graphs on/off"
  [nodes]="gpu_bench.py on the HCLTs, flows_in_nodes off, then on: epoch, peak"
  [variants]="bench_paper.py, ours: HCLT-mid as is, with flows_in_nodes, with 12.5% block padding"
  [nodekinds]="kernel_kinds.py on HCLT-32/128, flows_in_nodes off, then on beside it: time per kind"
  [epoch1]="epoch1_cost.py on HCLT-32 then HCLT-128: epoch 1 against epoch 2, step by step, and its compiles"
  [lonewarps]="kernel_kinds.py on HCLT-128/256 and PD-256: lone-block backward at 4 warps, then 8 (notes log 104)"
  [fallback]="gpu_bench.py on HCLT-20/33: group-blocks' fallback 0.5 (blocks of 32/64), then 0 (one-row blocks)"
  [mempeak]="memory_peak.py on the HCLTs: what is allocated at the peak, by allocation site"
  [gputests]="the Triton test files on the GPU (TRITON_INTERPRET=0): sums, padding, EM"
)
ORDER=(gputests epoch1 lonewarps fallback mempeak gate queries seeds trees mnist nodes fanin warm workers kinds nodekinds paper variants scale scalepj)
#: the training pipeline with float32 plan weights (layout-params' float32-weights)
F32_PIPELINE="canonicalize,group-blocks,partition-layers,layout-params{float32-weights=true}"

if [ "${1:-}" = "--list" ] || [ $# -eq 0 ]; then
  for s in "${ORDER[@]}"; do printf '%-8s %4ss  %s\n' "$s" "${LIMIT[$s]}" "${WHAT[$s]}"; done
  exit 0
fi
source benchmarks/device_env.sh

run_step() {
  local step=$1 dir="$OUT/$1"
  mkdir -p "$dir"
  # every step starts with cold Triton and pccc caches (an earlier step's kernels would make
  # its first batches warm); a step's own later runs reuse them unless they make their own
  export TRITON_CACHE_DIR=$(mktemp -d) PCCC_CACHE_DIR=$(mktemp -d)
  case $step in
    gate) timeout "${LIMIT[gate]}" python3 benchmarks/gpu_bench.py --check --pyjuice \
            --pj-site "$SITE" --out "$dir" ;;
    queries) timeout "${LIMIT[queries]}" python3 benchmarks/bench_queries.py \
            --which hclt256,pd256 --samples 2000 --pyjuice --pj-samples 1000 --pj-timeout 170 \
            --pj-site "$SITE" --out "$dir" ;;
    seeds) timeout "${LIMIT[seeds]}" python3 benchmarks/gpu_bench.py --seeds 0,1,2 \
            --which hclt32,hclt128,hclt256 --pyjuice --pj-site "$SITE" --out "$dir" ;;
    fanin) for v in "default:" "round:--option=round_fanin=true"; do
             name=${v%%:*}; opts=${v#*:}
             # shellcheck disable=SC2086
             TRITON_CACHE_DIR=$(mktemp -d) PCCC_CACHE_DIR=$(mktemp -d) \
             timeout $(( ${LIMIT[fanin]} / 2 )) python3 benchmarks/gpu_bench.py $opts \
              --out "$dir/$name"
           done ;;
    nodes) for v in ${NODES_COMBOS:-false true}; do
             timeout $(( ${LIMIT[nodes]} / 2 )) python3 benchmarks/gpu_bench.py \
              --which hclt32,hclt128,hclt256 --option flows_in_nodes=$v --pj-site "$SITE" \
              --out "$dir/$v"
           done ;;
    workers) timeout $(( ${LIMIT[workers]} / 2 )) python3 benchmarks/gpu_bench.py \
            --which hclt32,hclt128,pd64 --option jit_workers=0 --pj-site "$SITE" --out "$dir/off"
           TRITON_CACHE_DIR=$(mktemp -d) PCCC_CACHE_DIR=$(mktemp -d) \
           timeout $(( ${LIMIT[workers]} / 2 )) python3 benchmarks/gpu_bench.py \
            --which hclt32,hclt128,pd64 --option jit_workers=16 --pj-site "$SITE" \
            --out "$dir/on" ;;
    mnist) ( time timeout $(( ${LIMIT[mnist]} / 2 )) python3 -m pccc train --structure hclt \
            --latents 128 --data .bench/mnist.npz --epochs 3 --patience 0 --device cuda \
            --no-progress -o "$dir/mnist.pccm" )
           timeout $(( ${LIMIT[mnist]} / 2 )) python3 benchmarks/pyjuice_mnist_hclt.py \
            .bench/mnist.npz --latents 128 --epochs 3 ;;
    trees) timeout "${LIMIT[trees]}" python3 benchmarks/tree_quality.py .bench/mnist.npz \
            --estimators soft,softcpu,pjtree --latents 32 --init 4:4 --seeds 0,1 \
            --precisions tf32,fp32,torch --graphs on,off --out "$dir" ;;
    warm) timeout "${LIMIT[warm]}" python3 benchmarks/gpu_bench.py --which hclt128,pd64 --warm \
            --pj-site "$SITE" --out "$dir" ;;
    nodekinds) timeout $(( ${LIMIT[nodekinds]} / 2 )) python3 benchmarks/kernel_kinds.py \
                --which hclt32,hclt128 --out "$dir/off"
               timeout $(( ${LIMIT[nodekinds]} / 2 )) python3 benchmarks/kernel_kinds.py \
                --which hclt32,hclt128 --option flows_in_nodes=true \
                --compare-to "$dir/off/kernel_kinds.jsonl" --out "$dir/on" ;;
    epoch1) timeout "${LIMIT[epoch1]}" python3 benchmarks/epoch1_cost.py --mnist .bench/mnist.npz \
              --which hclt32,hclt128 ;;
    lonewarps) timeout $(( ${LIMIT[lonewarps]} / 2 )) python3 benchmarks/kernel_kinds.py \
                --which "${LONEWARPS_WHICH:-hclt128,hclt256,pd256}" --out "$dir/w4"
               timeout $(( ${LIMIT[lonewarps]} / 2 )) python3 benchmarks/kernel_kinds.py \
                --which "${LONEWARPS_WHICH:-hclt128,hclt256,pd256}" --option tiles.wbwds=8 \
                --compare-to "$dir/w4/kernel_kinds.jsonl" --out "$dir/w8" ;;
    fallback) for fb in 0.5 0; do
                TRITON_CACHE_DIR=$(mktemp -d) PCCC_CACHE_DIR=$(mktemp -d) \
                timeout $(( ${LIMIT[fallback]} / 2 )) python3 benchmarks/gpu_bench.py \
                 --which hclt20,hclt33 --out "$dir/fb$fb" \
                 --pipeline "canonicalize,group-blocks{fallback=$fb},partition-layers,layout-params"
              done ;;
    mempeak) timeout "${LIMIT[mempeak]}" python3 benchmarks/memory_peak.py \
              --which hclt32,hclt128,hclt256 ;;
    gputests) TRITON_INTERPRET=0 timeout "${LIMIT[gputests]}" python3 -m pytest -q -x \
               -p no:cacheprovider tests/test_triton_padding_elements.py tests/test_triton_compiled.py ;;
    kinds) timeout "${LIMIT[kinds]}" python3 benchmarks/kernel_kinds.py --which hclt256,pd256 \
            --out "$dir" ;;
    paper) timeout "${LIMIT[paper]}" python3 benchmarks/bench_paper.py --which pd-mid,hclt-mid \
            --out "$dir" ;;
    variants) for v in "" "--option=flows_in_nodes=true" \
                "--pipeline=canonicalize,group-blocks{tolerance=0.125},partition-layers,layout-params"; do
                timeout $(( ${LIMIT[variants]} / 3 )) python3 benchmarks/bench_paper.py \
                 --which hclt-mid --sides ours $v --out "$dir/$(echo "${v:-default}" | tr -c 'a-z0-9.\n' _)"
              done ;;
    scale|scalepj)  # (PD-1024 and below train on both sides: docs/benchmarks.md, scale points)
           # ours: float32 plan weights (the host's 4 bytes a weight) and flows in the node
           # rows where the schedule allows (HCLT)
           if [ "$step" = scale ]; then side=ours pd=1536,1728 hc=2560,3072
             opts=(--pipeline "$F32_PIPELINE" --option flows_in_nodes=true)
           else side=pyjuice pd=1280,1408,1536 hc=1024,2048,2560 opts=(); fi
           for k in pd hclt; do
             if [ $k = pd ]; then lad=(--pd-latents $pd); else lad=(--hclt-latents $hc); fi
             timeout $(( ${LIMIT[$step]} / 2 )) python3 benchmarks/bench_paper.py --scale \
              --kinds $k --sides $side "${lad[@]}" "${opts[@]}" --gib 79.1 --timeout 200 \
              --out "$dir/$k"
           done ;;
    *) echo "gpu_suite: unknown step $step (see --list)" >&2; return 2 ;;
  esac
}

status=()
for step in "$@"; do
  t0=$(date +%s)
  run_step "$step" 2>&1 | tee "$OUT/$step.log"
  rc=${PIPESTATUS[0]}
  status+=("$step rc=$rc $(( $(date +%s) - t0 ))s")
done
printf '%s\n' "${status[@]}"
