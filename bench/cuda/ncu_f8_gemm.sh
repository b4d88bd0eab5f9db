#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ncu_f8_gemm.sh - on the GPU machine (carry .carry from bench/device/stage.sh): Nsight Compute
# on an FP8 expert GEMM in a `moe bench --backend cuda --weights f8_e4m3` forward, with the
# sections that say what holds it: speed of light, memory workload (L2 and DRAM traffic),
# compute and scheduler statistics, warp states (what the warps wait on) and the SASS
# instructions they stall at (ncu_<label>_sass.csv), launch and occupancy. The text under $OUT.
# By default the wgmma engine's grouped GEMM (f8_grouped_gemm), once per f8_gather setting:
#   PRESET (deepseek_v3_e64), T (4096), GATHER ("on off"), COUNT (2 kernels each)
# Any other kernel of the forward: KERNEL (an ncu regex) and OPTIONS (the backend options,
# space-separated; replaces the wgmma ones), one run, e.g. the decode GEMMs at T = 1:
#   KERNEL=experts_gemm OPTIONS="graphs=off" T=1 COUNT=4 bash bench/cuda/ncu_f8_gemm.sh
# WEIGHTS (f8_e4m3): bf16 profiles a bf16 layer's kernels, e.g. the grouped bf16 wgmma GEMM
# beside the mma.sync kernels it lost to on qwen3 at T = 1024 (docs/bench-cuda.md, session 25):
#   WEIGHTS=bf16 PRESET=qwen3_30b_a3b T=1024 KERNEL=bf16_grouped_gemm OPTIONS="tiles=wgmma" bash bench/cuda/ncu_f8_gemm.sh
#   WEIGHTS=bf16 PRESET=qwen3_30b_a3b T=1024 KERNEL=experts_gemm OPTIONS="graphs=off" bash bench/cuda/ncu_f8_gemm.sh
# NCU_CLOCK: Nsight Compute's --clock-control, `base` (its default: the SMs locked at the base
# clock, about 1.5 GHz on an H100, so durations are comparable run to run) or `none` (the
# clocks the GPU would run at, boost and power capping included).
# Another build: wrap the call in carry_env.sh's with_backend LIB. After each profile the warp
# samples' shares by opcode and stall reason and the most sampled instructions are printed
# (bench/cuda/sass_stalls.py on the SASS CSV).
# docs/cuda.md ("The wgmma engine, measured") says what the first H100 showed and what is open.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv,noheader
profile() {  # label, kernel regex, backend options...
  local label=$1 kernel=$2; shift 2
  local log=$OUT/ncu_$label.txt rep=$OUT/ncu_$label opts=()
  for o in "$@"; do opts+=(--backend-option "$o"); done
  timeout 240 "$NCU" --kernel-name regex:"$kernel" --launch-skip "${SKIP:-2}" --launch-count "${COUNT:-2}" \
    --clock-control "${NCU_CLOCK:-base}" \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section SourceCounters \
    --section LaunchStats --section Occupancy -f -o "$rep" .carry/bin/moereg moe bench --backend cuda --preset "${PRESET:-deepseek_v3_e64}" \
    --weights "${WEIGHTS:-f8_e4m3}" --tokens "${T:-4096}" --no-reference --min-seconds 0.05 --log-level warn "${opts[@]}" > "$log.run" 2>&1
  "$NCU" -i "$rep.ncu-rep" --page details > "$log" 2>&1
  # Per SASS instruction: executed count and the warp-stall samples (where the warps wait).
  "$NCU" -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_${label}_sass.csv" 2>&1
  echo "== $label ($log)"
  grep -E "experts_gemm|f8_grouped_gemm<|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Stall|Warp Cycles Per Issued|Achieved Occupancy|Issue Slots|No Eligible|Active Warps Per|Eligible Warps|Grid Size|Waves Per SM" "$log" | head -80
  python3 bench/cuda/sass_stalls.py "$OUT/ncu_${label}_sass.csv" 12
}
if [ -n "${KERNEL:-}" ]; then
  profile "${LABEL:-$(tr -c 'A-Za-z0-9_\n' _ <<< "$KERNEL")_T${T:-4096}}" "$KERNEL" ${OPTIONS:-}
else
  for g in ${GATHER:-on off}; do
    profile "f8_gemm_gather_$g" f8_grouped_gemm f8_gemm=wgmma f8_activations=e4m3 f8_gather="$g"
  done
fi
