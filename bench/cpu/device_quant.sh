#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_quant.sh - the cpu backend on the AMX Xeon of the GPU machine, bf16 experts against the
# same experts quantized at create (--backend-option quantize=int8 | int4), for the
# qwen3_30b_a3b, mixtral_8x7b and deepseek_v3_e64 presets at T = 1, 16, 128, 1024: ms, weight
# bytes streamed per second against the read-bandwidth probe ("of bw"), and PyTorch's eager
# loop on the bf16 layer (the bf16 run of each preset only). One command, about 5-7 minutes:
#   bash bench/cpu/device_quant.sh        (carry: [".carry"], from bench/device/stage.sh)
# Environment: PRESETS, TOKENS, CONFIGS ("|"-separated, each space-separated backend options;
# "-" = none), MIN_SECONDS, REF_MAX_SECONDS (PyTorch rows estimated longer are skipped).
set -uo pipefail
here=$(pwd)
export LD_LIBRARY_PATH=$here/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=${MOEREG:-.carry/bin/moereg}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores; flags: $(grep -m1 flags /proc/cpuinfo | grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx2' | sort -u | tr '\n' ' ')"
IFS='|' read -r -a configs <<< "${CONFIGS:--|quantize=int8|quantize=int4}"
start=$SECONDS
for p in ${PRESETS:-qwen3_30b_a3b mixtral_8x7b deepseek_v3_e64}; do
  for i in "${!configs[@]}"; do
    opts=()
    [ "${configs[$i]}" = - ] || for kv in ${configs[$i]}; do opts+=(--backend-option "$kv"); done
    ref=(--reference-max-seconds "${REF_MAX_SECONDS:-20}")
    [ "$i" = 0 ] || ref=(--no-reference)
    echo "== $p ${configs[$i]} (t=$((SECONDS - start)) s)"
    out=$("$bin" moe bench --backend cpu "${opts[@]}" --preset "$p" --tokens "${TOKENS:-1,16,128,1024}" \
      --min-seconds "${MIN_SECONDS:-0.2}" "${ref[@]}" --log-level warn 2>&1)
    grep -oE '"w13_dtype":"[a-z0-9_]+"|"quantized_bytes":[0-9]+|"quantize_seconds":[0-9.]+|"load_seconds":[0-9.]+|"weight_bytes":[0-9]+|read bandwidth [0-9.]+ GB/s' <<< "$out" | tr '\n' ' '; echo
    grep -E '^ +tokens|^ +[0-9]+ ' <<< "$out" || echo "$out" | tail -5
  done
done
echo "total $((SECONDS - start)) s"
