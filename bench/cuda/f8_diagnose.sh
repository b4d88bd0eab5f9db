#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_diagnose.sh - one device call (carry .carry from bench/device/stage.sh) that says what holds
# the grouped FP8 wgmma GEMM on the machine at hand, in the order worth paying for if the call
# is cut short: the FP8 tests of the build (1 min), bf16 vs both FP8 engines with the GPU's
# clocks and power sampled under load (f8_gemm_ab.sh, ~2 min), then Nsight Compute on the wgmma
# GEMM (ncu_f8_gemm.sh, ~2-3 min: scheduler, warp states, per-SASS stall samples). Everything
# lands under $OUT; the summaries go to stdout. Environment: PRESET, TOKENS (1024,4096), ROUNDS (2),
# NCU_T (4096: the token count profiled).
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,driver_version --format=csv,noheader
step() {  # name, timeout seconds, command...
  local name=$1 limit=$2 t0=$SECONDS; shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s ($OUT/$name.log)"
}
step fp8_tests 120 .carry/bin/moereg_cuda_tests --gtest_filter='CudaFp8.*'
grep -E '^\[  (PASSED|FAILED) |Failure' "$OUT/fp8_tests.log" | head -10
ROUNDS=${ROUNDS:-2} TOKENS=${TOKENS:-1024,4096} ONLY="bf16 wgmma wgmma_rows cublaslt" step f8_gemm_ab 300 bash bench/cuda/f8_gemm_ab.sh
grep -E '^ *T \||^ +[0-9]+ \||^gpu' "$OUT/f8_gemm_ab.log"
GATHER=on T=${NCU_T:-4096} step ncu_f8_gemm 240 bash bench/cuda/ncu_f8_gemm.sh
grep -vE '^==' "$OUT/ncu_f8_gemm.log" | head -40
find "$OUT" -name '*.ncu-rep' -delete
