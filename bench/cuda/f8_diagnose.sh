#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_diagnose.sh - one device call (carry .carry from bench/device/stage.sh) that says what holds
# the FP8 expert GEMMs on the machine at hand, in the order worth paying for if the call is cut
# short: bf16 vs both FP8 engines with the GPU's clocks and power sampled under load, and (where
# f8_probe_builds.sh built them) the wgmma GEMM's load and tensor-core halves alone
# (f8_gemm_ab.sh, ~3 min), the CUDA tests of the build (~1 min), Nsight Compute on the decode
# GEMMs of a T = 1 F8 forward (~1 min), then on the wgmma GEMM (ncu_f8_gemm.sh, ~2 min:
# scheduler, warp states, per-SASS stall samples). Everything lands under $OUT; the summaries go
# to stdout. Environment: GTEST_ARGS, PRESET, TOKENS (1024,4096), ROUNDS (1), NCU_T (4096: the
# token count of the wgmma profile).
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,driver_version --format=csv,noheader
step() {  # name, timeout seconds, command...
  local name=$1 limit=$2 t0=$SECONDS; shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s ($OUT/$name.log)"
}
# bf16 against both FP8 engines and the wgmma GEMM's two halves alone (f8_probe_builds.sh).
probes="" names=""
for h in loads_only mma_only; do
  [ -f .carry/old/f8_$h.so ] && probes="$probes $h=$PWD/.carry/old/f8_$h.so" && names="$names $h"
done
VARIANTS="${probes# }" ROUNDS=${ROUNDS:-1} TOKENS=${TOKENS:-1024,4096} ONLY="bf16 wgmma wgmma_rows cublaslt$names" \
  step f8_gemm_ab 300 bash bench/cuda/f8_gemm_ab.sh
grep -E '^ *T \||^ +[0-9]+ \||^gpu' "$OUT/f8_gemm_ab.log"
step cuda_tests 200 .carry/bin/moereg_cuda_tests ${GTEST_ARGS:-}
grep -E '^\[  (PASSED|FAILED) |Failure|^\[  FAILED' "$OUT/cuda_tests.log" | head -12
# The decode GEMMs of an F8 forward at T = 1 (exact products; routed gate/up and down, and the bf16 shared expert's two).
KERNEL=experts_gemm OPTIONS="graphs=off" T=1 SKIP=20 COUNT=4 step ncu_decode_f8 150 bash bench/cuda/ncu_f8_gemm.sh
grep -vE '^==' "$OUT/ncu_decode_f8.log" | head -70
GATHER=on T=${NCU_T:-4096} step ncu_f8_gemm 200 bash bench/cuda/ncu_f8_gemm.sh
grep -vE '^==' "$OUT/ncu_f8_gemm.log" | head -50
find "$OUT" -name '*.ncu-rep' -delete
