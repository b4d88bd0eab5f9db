#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ncu_f8_gemm.sh - on the GPU machine (carry .carry from bench/device/stage.sh): Nsight Compute
# on the wgmma FP8 engine's grouped GEMM (f8_grouped_gemm) in a `moe bench --backend cuda
# --weights f8_e4m3 --backend-option f8_gemm=wgmma` forward, with the sections that say what
# holds it: speed of light, memory workload (L2 and DRAM traffic), compute and scheduler
# statistics, warp states (what the warps wait on) and the SASS instructions they stall at
# (ncu_f8_gemm_sass_<gather>.csv), launch and occupancy. One report per f8_gather setting,
# the text under $OUT.
#   PRESET (deepseek_v3_e64), T (4096), GATHER ("on off"), COUNT (2 kernels each)
# docs/cuda.md ("The wgmma engine, measured") says what the first H100 showed and what is open.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv,noheader
for g in ${GATHER:-on off}; do
  log=$OUT/ncu_f8_gemm_gather_$g.txt
  rep=$OUT/ncu_f8_gemm_gather_$g
  timeout 240 "$NCU" --kernel-name regex:f8_grouped_gemm --launch-skip 2 --launch-count "${COUNT:-2}" \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section SourceCounters \
    --section LaunchStats --section Occupancy -f -o "$rep" .carry/bin/moereg moe bench --backend cuda --preset "${PRESET:-deepseek_v3_e64}" \
    --weights f8_e4m3 --tokens "${T:-4096}" --no-reference --min-seconds 0.05 --log-level warn \
    --backend-option f8_gemm=wgmma --backend-option f8_activations=e4m3 --backend-option f8_gather="$g" > "$log.run" 2>&1
  "$NCU" -i "$rep.ncu-rep" --page details > "$log" 2>&1
  # Per SASS instruction: executed count and the warp-stall samples (where the warps wait).
  "$NCU" -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_f8_gemm_sass_$g.csv" 2>&1
  echo "== f8_gather=$g ($log)"
  grep -E "f8_grouped_gemm<|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Stall|Warp Cycles Per Issued|Achieved Occupancy|Issue Slots|No Eligible|Active Warps Per|Eligible Warps" "$log" | head -60
done
