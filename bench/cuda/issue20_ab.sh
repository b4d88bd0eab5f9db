#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# issue20_ab.sh - one device call (carry .carry) for the rows of issue 20 that are still above
# vLLM's figures or off their targets, cheapest and most needed first in case it is cut short:
#   1. the carried build's whole CUDA suite (~70 s);
#   (bench: the carried build's bench_moe.py table with the vLLM column and every forced path;
#   only when STEPS names it, ~4 min);
#   2. the decode tile variants (.carry/old/m16_*.so: the m16 tiles' k depth and stages, which
#      vLLM's tuned H200 configs set to 128-256 where moereg's default is 64) - each variant's
#      tile tests, then ab_decode.py on the carried build, its narrow=fill option and every
#      variant, alternated rounds on the same weights (qwen3, mixtral, deepseek at T = 1, 16, 128);
#   3. the grouped bf16 wgmma GEMM's variants (.carry/old/wgmma_*.so, e.g. from
#      bench/cuda/experiments/wgmma_n128.patch) at T = 128 and 1024 (wgmma_ab.sh);
#   4. F8 against bf16 at T = 1 replayed as a CUDA graph (f8_decode_ab.sh, deepseek_v3_e64), and
#      at T = 4096 on the carried FP8 GEMM and a variant of it (.carry/old/narrow.so, named for
#      session 27's narrow_tail experiment, since adopted; f8_gemm_ab.sh);
#   5. Nsight Compute on the grouped bf16 wgmma GEMM at qwen3 T = 1024, the row furthest from
#      vLLM (ncu_f8_gemm.sh with WEIGHTS=bf16): what holds it;
#   (prof: only when STEPS names it - ncu_decode.sh's per-kernel times of a forward at mixtral
#   T = 1 and 128 and qwen3 T = 1024, PROF_CASES to change them);
#   (silu: only when STEPS names it - the wgmma tests, then the grouped GEMM with wgmma_silu
#   separate and fused, wgmma_gather off and on, and the default path, at T = 128 and 1024 on
#   the three shapes; ~1.5 min).
# Here, before the call (after cmake --build build):
#   bash bench/device/stage.sh build && chmod -R u+w .carry
#   bash bench/cuda/variant_build.sh m16_k128s5 -DMOEREG_M16_BK=128 -DMOEREG_M16_STAGES=5 \
#        -DMOEREG_M16_NARROW_BK=128 -DMOEREG_M16_NARROW_STAGES=5          (and the others)
#   PATCH=bench/cuda/experiments/wgmma_n128.patch bash bench/cuda/variant_build.sh wgmma_n128
#   bash bench/cuda/variant_build.sh m16_k64 -DMOEREG_M16_BK=64 -DMOEREG_M16_STAGES=6 ... (the old tiles)
#   tar -C .carry -cJf .carry/old.tar.xz old && rm -rf .carry/old      (carry_env.sh unpacks it)
# Summaries to stdout, logs under $OUT. Environment: STEPS (default "tests decode wgmma f8 ncu").
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
export TMPDIR=${TMPDIR:-/dev/shm}
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,driver_version --format=csv,noheader
steps=" ${STEPS:-tests decode wgmma f8 ncu} "
step() {  # name, timeout seconds, command...
  local name=$1 limit=$2 t0=$SECONDS; shift 2; mkdir -p "$OUT"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s"
}
if [[ $steps == *" tests "* ]]; then
  step cuda_tests 200 .carry/bin/moereg_cuda_tests
  grep -E '^\[  (PASSED|FAILED) |Failure|^\[  FAILED' "$OUT/cuda_tests.log" | head -12
fi
if [[ $steps == *" bench "* ]]; then
  # The carried build's table with the vLLM column, every forced path beside the chosen one.
  OUT=$OUT/bench step bench 300 python3 bench/cuda/bench_moe.py --lib "$MOEREG_CUDA_BACKEND" --out "$OUT/bench" \
    --reference bench/cuda/vllm_reference_h200.json --no-eager --tiles
  grep -E '^device|^measured' "$OUT/bench/bench.log" | head -4
  grep '^|' "$OUT/bench/bench.log"
fi
if [[ $steps == *" decode "* ]]; then
  # Each build on its default path and on the m64 tiles forced (T = 128 rows that take the
  # grouped wgmma GEMM by default: mixtral's).
  libs=(--lib "base=$MOEREG_CUDA_BACKEND") configs=(--config base --config base:narrow=fill --config base:tiles=m64)
  for f in .carry/old/m16_*.so; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .so)
    MOEREG_CUDA_BACKEND=$PWD/$f step "test_$n" 60 .carry/bin/moereg_cuda_tests --gtest_filter='CudaRandom.EveryTileShape:CudaRandom.Cublas*:CudaGraphs.*'
    grep -E '^\[  (PASSED|FAILED) |Failure' "$OUT/test_$n.log" | head -4
    libs+=(--lib "$n=$PWD/$f") configs+=(--config "$n" --config "$n:tiles=m64")
  done
  step decode_ab 240 python3 bench/cuda/ab_decode.py "${libs[@]}" "${configs[@]}" --tokens 1,16,128 \
    --shapes qwen3_30b_a3b,mixtral_8x7b,deepseek_v3 --rounds 3
  sed -n '/^ms (x floor)/,$p' "$OUT/decode_ab.log"
  grep -E 'diff [1-9]|Error|error' "$OUT/decode_ab.log" | grep -v 'diff [0-9.]*e-0[3-9]' | head -5
fi
if [[ $steps == *" wgmma "* ]] && ls .carry/old/wgmma_*.so > /dev/null 2>&1; then
  SHAPES=qwen3_30b_a3b,mixtral_8x7b TOKENS=128,1024 OUT=$OUT/wgmma step wgmma_ab 200 bash bench/cuda/wgmma_ab.sh
  grep -E '^\||^==|rel L2' "$OUT/wgmma/wgmma_ab.log"
fi
if [[ $steps == *" f8 "* ]]; then
  LIBS="new=$MOEREG_CUDA_BACKEND" TOKENS=1 ROUNDS=2 OUT=$OUT/f8d step f8_decode_graphs 150 bash bench/cuda/f8_decode_ab.sh
  tail -6 "$OUT/f8d/f8_decode_graphs.log"
  variants=""
  [ -f .carry/old/narrow.so ] && variants="narrow=$PWD/.carry/old/narrow.so"
  VARIANTS="$variants" ONLY="bf16 wgmma${variants:+ narrow}" TOKENS=4096 ROUNDS=2 OUT=$OUT/f8g \
    step f8_gemm_ab 200 bash bench/cuda/f8_gemm_ab.sh
  grep -E '^ *T \||^ +[0-9]+ \||^gpu' "$OUT/f8g/f8_gemm_ab.log"
fi
if [[ $steps == *" silu "* ]]; then
  step silu_tests 100 .carry/bin/moereg_cuda_tests --gtest_filter='CudaWgmma.*:CudaOptions.*'
  grep -E '^\[  (PASSED|FAILED) |Failure' "$OUT/silu_tests.log" | head -8
  step silu_ab 150 python3 bench/cuda/ab_decode.py --lib "base=$MOEREG_CUDA_BACKEND" --config base:tiles=wgmma \
    --config base:tiles=wgmma,wgmma_silu=fused --config base:tiles=wgmma,wgmma_gather=on \
    --config base:tiles=wgmma,wgmma_silu=fused,wgmma_gather=on --config base --tokens 128,1024 \
    --shapes qwen3_30b_a3b,mixtral_8x7b,deepseek_v3 --rounds 3
  sed -n '/^ms (x floor)/,$p' "$OUT/silu_ab.log"
fi
if [[ $steps == *" prof "* ]]; then
  # Each kernel of a forward on the rows still above vLLM's figures (ncu serializes kernels, so
  # the launch gaps a real forward has are not in these times; the sum against the bench's
  # time shows them).
  CASES="${PROF_CASES:-mixtral_8x7b:bf16:1 mixtral_8x7b:bf16:128 qwen3_30b_a3b:bf16:1024}" COUNT=16 OUT=$OUT/prof \
    step prof 240 bash bench/cuda/ncu_decode.sh
  grep -vE '^==PROF==|^==WARNING==' "$OUT/prof/prof.log" | head -80
fi
if [[ $steps == *" ncu "* ]]; then
  WEIGHTS=bf16 PRESET=qwen3_30b_a3b T=1024 KERNEL=bf16_grouped_gemm OPTIONS="tiles=wgmma" COUNT=2 OUT=$OUT/ncu \
    step ncu_wgmma 150 bash bench/cuda/ncu_f8_gemm.sh
  grep -vE '^==' "$OUT/ncu/ncu_wgmma.log" | head -90
fi
