#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_ab.sh - alternated A/B rounds of `moe bench --backend cpu` under different backend
# options (docs/backends.md), in one call, because the lent machines differ by up to 1.6x from call to call and
# only ratios measured side by side mean anything. Needs .carry/ from bench/device/stage.sh.
#   CONFIGS="tile_weights=0|tile_weights=1 unit_min_rows=1" ROUNDS=2 \
#   PRESETS="mixtral_8x7b deepseek_v3_e64" TOKENS=1,128,1024 bash bench/cpu/device_ab.sh
# The first config of the first round also times PyTorch's reference (REFERENCE=0: never).
set -uo pipefail
here=$(pwd)
export LD_LIBRARY_PATH=$here/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores"
IFS='|' read -r -a configs <<< "${CONFIGS:?set CONFIGS to |-separated configs, each space-separated key=value backend options}"
for round in $(seq "${ROUNDS:-2}"); do
  for p in ${PRESETS:-mixtral_8x7b deepseek_v3_e64}; do
    for i in "${!configs[@]}"; do
      ref=--no-reference
      [ "$round" = 1 ] && [ "$i" = 0 ] && [ "${REFERENCE:-1}" = 1 ] && ref=
      echo "== round $round $p: ${configs[$i]}"
      opts=()
      for kv in ${configs[$i]}; do opts+=(--backend-option "$kv"); done
      out=$(.carry/bin/moereg moe bench --backend cpu "${opts[@]}" --preset "$p" --tokens "${TOKENS:-128,1024}" \
        --min-seconds "${MIN_SECONDS:-0.3}" --log-level warn $ref 2>&1)
      grep -oE '"load_seconds":[0-9.]+|"tile_weight_bytes":[0-9]+|phases.*' <<< "$out" | tr '\n' ' '; echo
      grep -E '^ +[0-9]+ ' <<< "$out"
    done
  done
done
