#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_quant.sh - the cpu backend on the AMX Xeon of the GPU machine, bf16 experts against the
# same experts quantized at create (--backend-option quantize=int8 | int4 | q8_0 | q4_k: the
# online int8/int4 codes and the GGUF ggml blocks; int8 and int4 each twice, with the integer
# products (int_dot, the default: AMX INT8 / AVX-512 VNNI) and with int_dot=off (codes widened
# into f32/bf16 panels), columns "int8" and "int8+panels"), for the qwen3_30b_a3b, mixtral_8x7b and
# deepseek_v3_e64 presets at T = 1, 16, 128, 1024: ms, weight bytes streamed per second against
# the read-bandwidth probe ("of bw": best of the probe's read patterns; forwards cycle over
# inputs routed afresh so the experts they read outgrow the last-level cache, and a row whose
# cycle still fits twice in it is marked *), and PyTorch's eager loop on the bf16 layer (the
# bf16 run of each preset only). Ends with one summary table. One command, about 6-7 minutes:
#   bash bench/cpu/device_quant.sh        (carry: [".carry"], from bench/device/stage.sh)
# Environment: PRESETS, TOKENS, CONFIGS ("|"-separated, each space-separated backend options;
# "-" = none), MIN_SECONDS, REF_MAX_SECONDS (PyTorch rows estimated longer are skipped),
# BUDGET_SECONDS (no new run starts after this many seconds, default 420: the 8-minute limit),
# NO_REFERENCE=1 (no PyTorch at all: a machine without torch), MOEREG (the binary).
set -uo pipefail
here=$(pwd)
export LD_LIBRARY_PATH=$here/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=${MOEREG:-.carry/bin/moereg}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores; flags: $(grep -m1 flags /proc/cpuinfo | grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx2' | sort -u | tr '\n' ' ')"
IFS='|' read -r -a configs <<< "${CONFIGS:--|quantize=int8|quantize=int4|quantize=int8 int_dot=off|quantize=int4 int_dot=off|quantize=q8_0|quantize=q4_k}"
budget=${BUDGET_SECONDS:-420}
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
start=$SECONDS
for p in ${PRESETS:-qwen3_30b_a3b mixtral_8x7b deepseek_v3_e64}; do
  for i in "${!configs[@]}"; do
    # One word per setting for the summary: "int8", "int8+panels" (int_dot=off), "q4_k", ...
    name=$(sed 's/quantize=//g; s/int_dot=off/panels/; s/ /+/g' <<< "${configs[$i]}"); [ "$name" = - ] && name=bf16
    if [ $((SECONDS - start)) -ge "$budget" ]; then
      echo "== $p ${configs[$i]}: skipped, past BUDGET_SECONDS=$budget"; continue
    fi
    opts=()
    [ "${configs[$i]}" = - ] || for kv in ${configs[$i]}; do opts+=(--backend-option "$kv"); done
    ref=(--reference-max-seconds "${REF_MAX_SECONDS:-20}")
    [ "$i" = 0 ] && [ -z "${NO_REFERENCE:-}" ] || ref=(--no-reference)
    echo "== $p ${configs[$i]} (t=$((SECONDS - start)) s)"
    out=$("$bin" moe bench --backend cpu "${opts[@]}" --preset "$p" --tokens "${TOKENS:-1,16,128,1024}" \
      --min-seconds "${MIN_SECONDS:-0.2}" "${ref[@]}" --log-level warn 2>&1)
    grep -oE '"w13_dtype":"[A-Za-z0-9_]+"|"int_dot[a-z_]*":("[A-Za-z0-9_]+"|null)|"quantized_bytes":[0-9]+|"quantize_seconds":[0-9.]+|"load_seconds":[0-9.]+|"weight_bytes":[0-9]+|"tile_weight(_huge_page)?_bytes":[0-9]+|read bandwidth [0-9.]+ GB/s' <<< "$out" | tr '\n' ' '; echo
    grep -E 'read bandwidth is the best of|read bandwidth not trusted|forwards cycle over|the experts of a cycle fit' <<< "$out"
    grep -E '^ +tokens|^ +[0-9]+ ' <<< "$out" || echo "$out" | tail -5
    # preset config T ms of_bw torch_ms
    awk -v p="$p" -v c="$name" '/^ +[0-9]+ +[0-9.]+ /{print p, c, $1, $2, $5, $7}' <<< "$out" >> "$summary"
  done
done
echo
echo "summary: ms per forward (x = speed against bf16 on the same layer; of bw against the probe; * = the cycle's experts fit twice in the LLC, ~ = the LLC holds 5 % of the cycle or more)"
awk '
  { key = $1 " " $3; ms[key, $2] = $4; bw[key, $2] = $5; if ($2 == "bf16") torch[key] = $6
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if (!($2 in cseen)) { cseen[$2] = 1; cols[++m] = $2 } }
  END {
    printf "%-16s %5s", "preset", "T"
    for (j = 1; j <= m; ++j) printf " | %-22s", cols[j]
    printf " | %9s | %s\n", "torch ms", "bf16 vs torch"
    for (i = 1; i <= n; ++i) {
      split(order[i], k, " "); printf "%-16s %5s", k[1], k[2]
      for (j = 1; j <= m; ++j) {
        c = cols[j]; v = ms[order[i], c]
        if (v == "") { printf " | %-22s", "-"; continue }
        cell = sprintf("%.3f %s", v, bw[order[i], c])
        if (c != "bf16" && ms[order[i], "bf16"] != "") cell = cell sprintf(" %.2fx", ms[order[i], "bf16"] / v)
        printf " | %-22s", cell
      }
      t = torch[order[i]]
      printf " | %9s | %s\n", t, (t != "" && t != "-" && ms[order[i], "bf16"] > 0) ? sprintf("%.2fx", t / ms[order[i], "bf16"]) : "-"
    }
  }' "$summary"
echo "total $((SECONDS - start)) s"
