#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_diagnose.sh - one device call (carry .carry from bench/device/stage.sh) that checks the
# carried CUDA backend and says what holds its FP8 expert GEMMs, cheapest and most needed first,
# in case the call is cut short: the build's CUDA tests (~1 min); each CANDIDATE build's
# tensor-core and F8 shared-expert tests (.carry/old/NAME.so from variant_build.sh, ~20 s each:
# gather on and off bit-identical, the engines within 1e-2 of cuBLASLt, the shared expert in
# the grouped GEMMs within its bound); the decode A/B of the build
# and the candidates (f8_decode_ab.sh, ~2 min); bf16 against both FP8 engines, the candidates
# and (where f8_probe_builds.sh built them) the wgmma GEMM's load and tensor-core halves alone,
# with the GPU's clocks and power sampled under load (f8_gemm_ab.sh, ~3 min); then, with NCU=on,
# Nsight Compute on the decode GEMMs of a T = 1 F8 forward and on the wgmma GEMM (ncu_f8_gemm.sh,
# ~3 min). Everything lands under $OUT; the summaries go to stdout. Environment: CANDIDATES
# (names, space-separated; NAME:key=value,... adds backend options), GEMM_VARIANTS, DECODE_CANDIDATES, DECODE_VARIANTS, GTEST_ARGS, PRESET, TOKENS (1024,4096), ROUNDS (1), DECODE_TOKENS
# (1,16,128), DECODE_ROUNDS (2), NCU (off), NCU_T (4096: the token count of the wgmma profile).
# Session 23 ran it as `CANDIDATES=NAME DECODE_CANDIDATES= DECODE_TOKENS=1 DECODE_ROUNDS=1
# ROUNDS=2 bash bench/cuda/f8_diagnose.sh` after `bash bench/cuda/f8_probe_builds.sh` here
# (~5.5 min; docs/cuda.md "Session 23").
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,driver_version --format=csv,noheader
step() {  # name, timeout seconds, command...
  local name=$1 limit=$2 t0=$SECONDS; shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s ($OUT/$name.log)"
}
step cuda_tests 200 .carry/bin/moereg_cuda_tests ${GTEST_ARGS:-}
grep -E '^\[  (PASSED|FAILED) |Failure|^\[  FAILED' "$OUT/cuda_tests.log" | head -12
variants="" names="" libs=""
# CANDIDATES entries: NAME (.carry/old/NAME.so) or NAME:key=value,... (that build with backend
# options of its own in the GEMM A/B; the decode A/B and the test take the build alone).
for entry in ${CANDIDATES:-}; do
  c=${entry%%:*} opts=""
  [ "$entry" != "$c" ] && opts=",${entry#*:}"
  lib=$PWD/.carry/old/$c.so
  [ -f "$lib" ] || { echo "== candidate $c: no $lib (bench/cuda/variant_build.sh $c ...)"; continue; }
  MOEREG_CUDA_BACKEND=$lib step "test_$c" 90 .carry/bin/moereg_cuda_tests --gtest_filter=CudaFp8.TensorCoresWithE4m3Activations:CudaFp8.SharedExpertInF8
  grep -E '^\[  (PASSED|FAILED) |Failure|T=1500' "$OUT/test_$c.log" | head -8
  variants="$variants $c=$lib$opts" names="$names $c" libs="$libs $c=$lib"
done
# GEMM_VARIANTS: "name:key=value,..." - the carried build again with backend options of its own
# in the GEMM A/B (e.g. wide:f8_tile=128x256).
for v in ${GEMM_VARIANTS:-}; do
  variants="$variants ${v%%:*}=$MOEREG_CUDA_BACKEND,${v#*:}" names="$names ${v%%:*}"
done
# DECODE_CANDIDATES (default CANDIDATES): the builds of the decode A/B, where large-T GEMM
# experiments change nothing.
decode_libs=$libs
[ -n "${DECODE_CANDIDATES+x}" ] && decode_libs=$(for c in $DECODE_CANDIDATES; do printf ' %s=%s' "$c" "$PWD/.carry/old/$c.so"; done)
# DECODE_VARIANTS: "name:key=value,..." - the carried build again with backend options of its own.
for v in ${DECODE_VARIANTS:-}; do decode_libs="$decode_libs ${v%%:*}=$MOEREG_CUDA_BACKEND:${v#*:}"; done
LIBS="new=$MOEREG_CUDA_BACKEND$decode_libs" ROUNDS=${DECODE_ROUNDS:-2} TOKENS=${DECODE_TOKENS:-1,16,128} step f8_decode_ab 240 bash bench/cuda/f8_decode_ab.sh
tail -4 "$OUT/f8_decode_ab.log"
for h in loads_only mma_only; do
  [ -f .carry/old/f8_$h.so ] && variants="$variants $h=$PWD/.carry/old/f8_$h.so" && names="$names $h"
done
VARIANTS="${variants# }" ROUNDS=${ROUNDS:-1} TOKENS=${TOKENS:-1024,4096} ONLY="bf16 wgmma wgmma_rows cublaslt$names" \
  step f8_gemm_ab 300 bash bench/cuda/f8_gemm_ab.sh
grep -E '^ *T \||^ +[0-9]+ \||^gpu' "$OUT/f8_gemm_ab.log"
# What an experiment build says about its launches on stderr (lines starting "[f8 ").
grep -h '^\[f8 ' "$OUT"/f8ab_*.err 2>/dev/null | sort -u
[ "${NCU:-off}" = on ] || exit 0
# The decode GEMMs of an F8 forward at T = 1 (exact products; routed gate/up and down, and the bf16 shared expert's two).
KERNEL=experts_gemm OPTIONS="graphs=off" T=1 SKIP=20 COUNT=4 step ncu_decode_f8 150 bash bench/cuda/ncu_f8_gemm.sh
grep -vE '^==' "$OUT/ncu_decode_f8.log" | head -70
GATHER=off T=${NCU_T:-4096} step ncu_f8_gemm 200 bash bench/cuda/ncu_f8_gemm.sh
grep -vE '^==' "$OUT/ncu_f8_gemm.log" | head -50
find "$OUT" -name '*.ncu-rep' -delete
