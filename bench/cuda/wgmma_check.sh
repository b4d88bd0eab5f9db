#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# wgmma_check.sh - one device call (carry .carry from bench/device/stage.sh) for the grouped
# bf16 wgmma GEMM (backends/cuda/src/bf16_grouped_gemm.cu): its GPU tests and the cuBLAS-policy
# tests beside it (~1 min), then bench_moe.py with --tiles, so every shape and token count is
# timed on the chosen path, on each forced path and on tiles=wgmma in one run, with the vLLM
# column (~3-4 min; the tile table says where wgmma=auto should take over). Summaries to stdout,
# logs under $OUT. Environment: GTEST_FILTER, BENCH_SHAPES, BENCH_TOKENS.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,driver_version --format=csv,noheader
t0=$SECONDS
timeout 180 .carry/bin/moereg_cuda_tests --gtest_filter="${GTEST_FILTER:-CudaWgmma.*:CudaRandom.Cublas*:CudaRandom.EveryTileShape}" \
  > "$OUT/wgmma_tests.log" 2>&1
echo "== tests: rc $? in $((SECONDS - t0)) s"
grep -E '^\[  (PASSED|FAILED) |Failure|^\[ wgmma' "$OUT/wgmma_tests.log" | head -40
t0=$SECONDS
args=(--lib "$MOEREG_CUDA_BACKEND" --out "$OUT" --reference bench/cuda/vllm_reference_h200.json --no-eager --tiles)
[ -n "${BENCH_SHAPES:-}" ] && args+=(--shapes "$BENCH_SHAPES")
[ -n "${BENCH_TOKENS:-}" ] && args+=(--tokens "$BENCH_TOKENS")
timeout 420 python3 bench/cuda/bench_moe.py "${args[@]}" > "$OUT/bench.log" 2>&1
echo "== bench: rc $? in $((SECONDS - t0)) s"
grep -E '^ *T=|^device|^measured|^[a-z0-9_]+: E=' "$OUT/bench.log" | cut -c1-260
tail -40 "$OUT/bench.log" | grep '^|'
