#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_gemm_ab.sh - on the GPU machine, with .carry/ from bench/device/stage.sh: F8_E4M3 experts
# on the two FP8 tensor-core engines (f8_gemm=wgmma: moereg's grouped GEMM, with f8_gather on
# and off; f8_gemm=cublaslt: one cuBLASLt matmul per hit expert) and the bf16 layer of the same
# preset, in alternated rounds of `moe bench` (f8_activations=e4m3, so every T runs on the
# engine). One table,
# medians over the rounds. Environment: PRESET (deepseek_v3_e64), TOKENS (128,1024,4096),
# ROUNDS (2), MIN_SECONDS (0.3), VARIANTS ("name=path[,option=value...]" entries, space-separated: other builds' CUDA backends,
# e.g. from variant_build.sh, each timed with f8_gemm=wgmma, its own build's defaults and its options, e.g.
# "base=.carry/old/base.so,f8_gather=off"; loaded through carry_env.sh's with_backend, and a
# run that loaded another library is left out of the table),
# ONLY (the names to run, e.g. "bf16 wgmma base": all when unset). Prints the GPU's clocks and
# power limit before, and per engine the SM clock, power and clock-event reasons sampled while
# it kept the GPU busy.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
# The GPU and its clocks and power limit: two machines of one model ran the engine 1.3x apart.
gpu_state() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit,clocks_event_reasons.active \
    --format=csv,noheader 2>/dev/null || nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
}
echo "gpu before: $(gpu_state)"
# Sampled every 100 ms while the runs go (f8ab_gpu.csv), each run's start and end in
# f8ab_windows.txt: the SM clock, power and clock-event reasons while each engine keeps the GPU
# busy (an FP8 GEMM held at a lower clock by the power cap than the bf16 one would show here).
nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks.sm,power.draw,clocks_event_reasons.active \
  --format=csv,noheader,nounits -lms 100 > "$OUT/f8ab_gpu.csv" 2>/dev/null &
sampler=$!
: > "$OUT/f8ab_windows.txt"
M=$PWD/.carry/bin/moereg
P=${PRESET:-deepseek_v3_e64}
# name, weights, backend options
configs=("bf16 bf16" "wgmma f8_e4m3 f8_gemm=wgmma f8_gather=on" "wgmma_rows f8_e4m3 f8_gemm=wgmma f8_gather=off"
         "cublaslt f8_e4m3 f8_gemm=cublaslt")
declare -A variant_lib
for v in ${VARIANTS:-}; do
  name=${v%%=*}; rest=${v#*=}; lib=${rest%%,*}; opts=""
  [ "$rest" != "$lib" ] && opts=$(tr ',' ' ' <<< "${rest#*,}")
  variant_lib[$name]=$lib
  configs+=("$name f8_e4m3 f8_gemm=wgmma $opts")
done
new_backend=$MOEREG_CUDA_BACKEND
for round in $(seq "${ROUNDS:-2}"); do
  for c in "${configs[@]}"; do
    read -r name w opts <<< "$c"
    [ -n "${ONLY:-}" ] && ! grep -qw -- "$name" <<< "$ONLY" && continue
    lib=${variant_lib[$name]:-$new_backend}
    args=()
    for o in $opts; do args+=(--backend-option "$o"); done
    [ "$w" = f8_e4m3 ] && args+=(--backend-option f8_activations=e4m3)
    t_start=$(date +%s.%N)
    with_backend "$lib" timeout 200 "$M" moe bench --backend cuda --preset "$P" --weights "$w" --tokens "${TOKENS:-128,1024,4096}" \
      --min-seconds "${MIN_SECONDS:-0.3}" --no-reference --json --log-level warn "${args[@]}" \
      > "$OUT/f8ab_${round}_$name.json" 2> "$OUT/f8ab_${round}_$name.err" || tail -3 "$OUT/f8ab_${round}_$name.err"
    # A run of another library than asked for is left out of the table.
    ran_backend "$OUT/f8ab_${round}_$name.json" "$lib" || mv "$OUT/f8ab_${round}_$name.json" "$OUT/f8ab_${round}_$name.wrong"
    echo "$name $t_start $(date +%s.%N)" >> "$OUT/f8ab_windows.txt"
  done
done
kill "$sampler" 2>/dev/null
# Per engine, over the samples with the GPU at least 90 % busy inside its runs: the SM clock
# (median, min), the power drawn (median, max) and the clock-event reasons seen (0x4: the
# software power cap; 0x1: idle).
python3 - "$OUT/f8ab_gpu.csv" "$OUT/f8ab_windows.txt" <<'PY'
import collections, datetime, statistics, sys
samples = []
for line in open(sys.argv[1]):
    f = [x.strip() for x in line.split(",")]
    if len(f) != 5: continue
    try:
        t = datetime.datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        samples.append((t, float(f[1]), float(f[2]), float(f[3]), f[4]))
    except ValueError:
        continue
per = collections.defaultdict(list)
for line in open(sys.argv[2]):
    name, t0, t1 = line.split()
    per[name] += [s for s in samples if float(t0) <= s[0] <= float(t1) and s[1] >= 90]
for name, ss in per.items():
    if not ss: print(f"gpu busy, {name}: no sample at >= 90 % utilization"); continue
    clk, pw = [s[2] for s in ss], [s[3] for s in ss]
    print(f"gpu busy, {name}: {len(ss)} samples, SM clock median {statistics.median(clk):.0f} (min {min(clk):.0f}) MHz, "
          f"power median {statistics.median(pw):.0f} (max {max(pw):.0f}) W, reasons "
          + " ".join(f"{k} x{v}" for k, v in collections.Counter(s[4] for s in ss).items()))
PY
python3 - "$OUT" "$P" ${VARIANTS:-} <<'PY'
import glob, json, statistics, sys
out, preset = sys.argv[1:3]
variants = tuple(v.split("=", 1)[0] for v in sys.argv[3:])
runs = {}
for f in sorted(glob.glob(f"{out}/f8ab_*_*.json")):
    name = f.split("/f8ab_", 1)[1].split("_", 1)[1][:-5]
    try: rows = json.load(open(f))["rows"]
    except Exception as e: print(f, "unreadable:", e); continue
    for r in rows: runs.setdefault((name, r["tokens"]), []).append(r["seconds"] * 1e3)
Ts = sorted({t for _, t in runs})
print(f"{preset}: ms per forward, median of rounds (each round's figures in brackets)")
names = ("bf16", "wgmma", "wgmma_rows", "cublaslt") + variants
print(f"{'T':>6} | " + " | ".join(f"{n:>20}" for n in names) + " | bf16/wgmma | cublaslt/wgmma")
for t in Ts:
    m = {n: statistics.median(runs[(n, t)]) if (n, t) in runs else float("nan") for n in names}
    cell = lambda n: f"{m[n]:7.3f} [{' '.join(f'{v:.3f}' for v in runs.get((n, t), []))}]"
    print(f"{t:6d} | " + " | ".join(f"{cell(n):>20}" for n in names) + f" | {m['bf16']/m['wgmma']:10.2f} | {m['cublaslt']/m['wgmma']:14.2f}")
PY
