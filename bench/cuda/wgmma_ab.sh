#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# wgmma_ab.sh - on the GPU machine, with .carry/ from bench/device/stage.sh and the variant builds
# of bench/cuda/variant_build.sh: the grouped bf16 wgmma GEMM (tiles=wgmma) of the carried build
# and of each variant, timed by bench_moe.py on the same shapes and token counts, one process per
# build (in the order given, twice over with ROUNDS=2: the second pass in reverse), medians per
# build; each run also times the layer's default path (`default` column, the carried build's).
# Environment: VARIANTS (names of .carry/old/NAME.so; default every .carry/old/wgmma_*.so),
# SHAPES (qwen3_30b_a3b,mixtral_8x7b,deepseek_v3), TOKENS (1024,4096), ROUNDS (1).
# Variants are builds from bench/cuda/variant_build.sh (an experiment patch as PATCH=...):
#   here:  bash bench/device/stage.sh build && chmod -R u+w .carry
#          PATCH=bench/cuda/experiments/wgmma_n128.patch bash bench/cuda/variant_build.sh wgmma_n128
#   there: bash bench/cuda/wgmma_ab.sh      (carry .carry)
# Session 27 (H100) timed wgmma_half_a (adopted since: a tile split by columns loads 64 A rows)
# and wgmma_n128 (128 x 128 tiles, 6 stages: slower on mixtral T = 128, 1.0429 against 0.9686 ms).
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
names=(base)
libs=("$MOEREG_CUDA_BACKEND")
if [ -n "${VARIANTS:-}" ]; then
  for v in $VARIANTS; do names+=("$v"); libs+=("$PWD/.carry/old/$v.so"); done
else
  for f in .carry/old/wgmma_*.so; do [ -f "$f" ] && names+=("$(basename "$f" .so)") && libs+=("$PWD/$f"); done
fi
order=("${!names[@]}")
for round in $(seq "${ROUNDS:-1}"); do
  [ $((round % 2)) -eq 0 ] && order=($(printf '%s\n' "${order[@]}" | tac))
  for i in "${order[@]}"; do
    dir=$OUT/wgmma_ab_${round}_${names[$i]}; mkdir -p "$dir"
    t0=$SECONDS
    timeout 300 python3 bench/cuda/bench_moe.py --lib "${libs[$i]}" --out "$dir" --no-eager --tiles --forced wgmma \
      --shapes "${SHAPES:-qwen3_30b_a3b,mixtral_8x7b,deepseek_v3}" --tokens "${TOKENS:-1024,4096}" > "$dir/log" 2>&1
    echo "== ${names[$i]} round $round: rc $? in $((SECONDS - t0)) s"
  done
done
python3 - "$OUT" "${names[@]}" <<'PY'
import glob, json, statistics, sys
out, names = sys.argv[1], sys.argv[2:]
ms = {}  # (shape, T) -> column -> [ms]
for n in names:
    for f in glob.glob(f"{out}/wgmma_ab_*_{n}/bench_cuda.json"):
        for r in json.load(open(f))["rows"]:
            key = (r["shape"], r["T"])
            ms.setdefault(key, {}).setdefault(n, []).append(r["moereg_wgmma_ms"])
            if n == "base":
                ms[key].setdefault("default", []).append(r["moereg_ms"])
                ms[key]["path"] = r["tiles"][:24]
cols = ["default"] + names
print("| shape | T | default path | " + " | ".join(c + " ms" for c in cols) + " |")
print("|---|---:|---|" + "---:|" * len(cols))
for (shape, T), m in sorted(ms.items()):
    cells = [f"{statistics.median(m[c]):.4f}" if c in m else "-" for c in cols]
    print(f"| {shape} | {T} | {m.get('path', '')} | " + " | ".join(cells) + " |")
PY
# Each run's tiles=wgmma output against PyTorch's grouped_mm (worst relative L2 over its rows).
grep -h "forced worst relL2" "$OUT"/wgmma_ab_*/log | sed 's/.*T= *\([0-9]*\).*forced worst relL2 \(.*\)/T=\1 worst rel L2 \2/' | sort | uniq -c | sort -rn | head -5
