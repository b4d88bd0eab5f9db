#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_gemm_ab.sh - on the GPU machine, with .carry/ from bench/device/stage.sh: F8_E4M3 experts
# on the two FP8 tensor-core engines (f8_gemm=wgmma: moereg's grouped GEMM, with f8_gather on
# and off; f8_gemm=cublaslt: one cuBLASLt matmul per hit expert) and the bf16 layer of the same
# preset, in alternated rounds of `moe bench` (f8_activations=e4m3, so every T runs on the
# engine). One table,
# medians over the rounds. Environment: PRESET (deepseek_v3_e64), TOKENS (128,1024,4096),
# ROUNDS (2), MIN_SECONDS (0.3), VARIANTS ("name=path[,option=value...]" entries, space-separated: other builds' CUDA backends,
# each timed with f8_gemm=wgmma and its options, e.g. "base=.carry/old/base.so,f8_gather=off"),
# ONLY (the names to run, e.g. "bf16 wgmma base": all when unset). Prints the GPU's clocks and
# power limit before and after, and the SM clock, power and clock-event reasons sampled under load.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
# The GPU and its clocks and power limit: two machines of one model ran the engine 1.3x apart.
gpu_state() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit,clocks_event_reasons.active \
    --format=csv,noheader 2>/dev/null || nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
}
echo "gpu before: $(gpu_state)"
# Sampled every 500 ms while the runs go (f8ab_gpu.csv): SM clock and power under load.
nvidia-smi --query-gpu=clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader,nounits -lms 500 \
  > "$OUT/f8ab_gpu.csv" 2>/dev/null &
sampler=$!
M=$PWD/.carry/bin/moereg
P=${PRESET:-deepseek_v3_e64}
# name, weights, backend options
configs=("bf16 bf16" "wgmma f8_e4m3 f8_gemm=wgmma" "wgmma_rows f8_e4m3 f8_gemm=wgmma f8_gather=off"
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
    export MOEREG_CUDA_BACKEND=$new_backend
    [ -n "${variant_lib[$name]:-}" ] && export MOEREG_CUDA_BACKEND=${variant_lib[$name]}
    args=()
    for o in $opts; do args+=(--backend-option "$o"); done
    [ "$w" = f8_e4m3 ] && args+=(--backend-option f8_activations=e4m3)
    timeout 200 "$M" moe bench --backend cuda --preset "$P" --weights "$w" --tokens "${TOKENS:-128,1024,4096}" \
      --min-seconds "${MIN_SECONDS:-0.3}" --no-reference --json --log-level warn "${args[@]}" \
      > "$OUT/f8ab_${round}_$name.json" 2> "$OUT/f8ab_${round}_$name.err" || tail -3 "$OUT/f8ab_${round}_$name.err"
  done
done
kill "$sampler" 2>/dev/null
# Under load: the SM clock's spread, the power drawn and the clock-event reasons (samples above 300 MHz).
python3 - "$OUT/f8ab_gpu.csv" <<'PY'
import collections, statistics, sys
rows = [l.split(", ") for l in open(sys.argv[1]) if l.count(",") == 2]
rows = [(float(c), float(p), r.strip()) for c, p, r in rows if c.strip().replace(".", "").isdigit() and float(c) > 300]
if rows:
    clocks = sorted(c for c, _, _ in rows)
    print(f"gpu under load: {len(rows)} samples, SM clock min {clocks[0]:.0f} / median {statistics.median(clocks):.0f} / "
          f"max {clocks[-1]:.0f} MHz, power max {max(p for _, p, _ in rows):.0f} W, reasons "
          + " ".join(f"{k} x{v}" for k, v in collections.Counter(r for _, _, r in rows).items()))
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
