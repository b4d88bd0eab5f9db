#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_spread.sh [LAYERS] [ROUNDS] - the spread of `cp -r`, hf -> transformers_v5 and back,
# alternated ROUNDS times on one synthetic checkpoint (page cache warm before each command), so
# that a ratio to `cp` is read against cp's own run-to-run spread. Needs .carry/ from
# bench/device/stage.sh.
set -uo pipefail
layers=${1:-5}; rounds=${2:-3}
here=$(pwd)
export LD_LIBRARY_PATH=$here/.carry/lib:${LD_LIBRARY_PATH:-}
M=$here/.carry/bin/moereg
W=${TMPDIR:-/tmp}/moereg-convert-spread
rm -rf "$W"; mkdir -p "$W"
$M synth "$W/hf" --preset qwen3_30b_a3b --layers "$layers" > /dev/null || exit 1
$M convert "$W/hf" "$W/v5" --to transformers_v5 > /dev/null || exit 1
sync
T="python3 $here/bench/convert/run_timed.py"
res=$W/results.txt; : > "$res"
for r in $(seq "$rounds"); do
  cat "$W"/hf/*.safetensors > /dev/null; $T cp -- cp -r "$W/hf" "$W/cp" >> "$res"; rm -rf "$W/cp"; sync
  cat "$W"/hf/*.safetensors > /dev/null; $T forward -- "$M" convert "$W/hf" "$W/f" --to transformers_v5 >> "$res"; rm -rf "$W/f"; sync
  cat "$W"/v5/*.safetensors > /dev/null; $T reverse -- "$M" convert "$W/v5" "$W/b" --to hf >> "$res"; rm -rf "$W/b"; sync
  cat "$W"/v5/*.safetensors > /dev/null; $T reverse_1G -- "$M" convert "$W/v5" "$W/b" --to hf --shard-size 1GB >> "$res"; rm -rf "$W/b"; sync
done
awk '{ t[$1] = t[$1] sprintf(" %6.2f", $2); if (!($1 in mn) || $2 < mn[$1]) mn[$1] = $2 }
     END { for (k in t) printf "%-12s min %6.2f  runs%s\n", k, mn[k], t[k];
           printf "forward / cp (min over min) %.2f; reverse / cp %.2f\n", mn["forward"] / mn["cp"], mn["reverse"] / mn["cp"] }' "$res"
