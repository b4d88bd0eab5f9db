#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run_all.sh - on the GPU machine, from the repository root, with .carry/ from
# bench/device/stage.sh: the steps named in STEPS (default: all), logs under $OUT.
#   tests    the CUDA backend's GoogleTest suite (moereg_cuda_tests)
#   cli      `moereg moe run --backend cuda|cpu` on every fixture (bench/cuda/cli_check.sh)
#   bench    bench/cuda/bench_moe.py (BENCH_ARGS, e.g. --tiles)
#   clibench `moereg moe bench` with --backend auto and cuda (PyTorch on the GPU as reference),
#            and `moereg moe run --backend auto` on a fixture
#   convert  bench/convert/device_compare.sh (LAYERS, default 5)
#   spread   bench/convert/device_spread.sh: cp, forward and reverse alternated (LAYERS, ROUNDS)
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
STEPS=${STEPS:-tests cli bench convert}
export PYTHONUNBUFFERED=1
. bench/device/carry_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
echo "cores $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
for step in $STEPS; do
  t0=$(date +%s)
  echo "=== $step"
  case $step in
    tests) .carry/bin/moereg_cuda_tests ${GTEST_ARGS:-} > "$OUT/tests.log" 2>&1; rc=$?
           grep -E "^\[  (PASSED|FAILED) |FAILED|Failure" "$OUT/tests.log" | head -40; echo "tests exit $rc" ;;
    cli) bash bench/cuda/cli_check.sh 2>&1 | tee "$OUT/cli.log" ;;
    bench) python3 bench/cuda/bench_moe.py --lib "$MOEREG_CUDA_BACKEND" --out "$OUT" --reference bench/cuda/vllm_reference_h200.json ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
           tail -45 "$OUT/bench.log" ;;
    clibench) M=.carry/bin/moereg; f=.carry/fixtures/qwen3_moe
           export LD_LIBRARY_PATH=$PWD/.carry/lib:$LD_LIBRARY_PATH
           $M moe run $f/hf --layer 1 --input $f/moe_block.safetensors --output /tmp/auto.safetensors 2>&1 | grep -i backend
           $M moe bench --preset qwen3_30b_a3b --tokens 1,128,4096 --min-seconds 0.3 2>&1 | tee "$OUT/clibench.log" | tail -8
           $M moe bench --backend cuda --preset deepseek_v3_e64 --tokens 1,1024 --min-seconds 0.3 --json --log-level warn > "$OUT/clibench_ds.json" 2>&1
           python3 -c "import json;d=json.load(open('$OUT/clibench_ds.json'));print(d['backend'],d['torch']);[print(r['tokens'],round(r['seconds']*1e3,3),'ms ref',round(r['reference_seconds']*1e3,3),'ms x',round(r['speedup'],2),'diff',r['max_rel_diff_vs_reference']) for r in d['rows']]" ;;
    spread) bash bench/convert/device_spread.sh "${LAYERS:-5}" "${ROUNDS:-3}" 2>&1 | tee "$OUT/spread.log" | tail -6 ;;
    convert) bash bench/convert/device_compare.sh "${LAYERS:-5}" > "$OUT/convert.log" 2>&1; tail -25 "$OUT/convert.log" ;;
  esac
  echo "=== $step took $(( $(date +%s) - t0 )) s"
done
