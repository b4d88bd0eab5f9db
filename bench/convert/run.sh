#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Conversion throughput and memory: a synthetic Qwen3-30B-A3B-shaped checkpoint (E=128
# H=2048 I=768, LAYERS layers, about 1.2 GB of experts per layer) converted hf ->
# transformers_v5 and back, beside `cp -r` of the same files in the same run, page cache
# warm, with each command's peak resident memory (GNU time). Prints a table with ratios.
# usage: bench/convert/run.sh [BUILD_DIR] [LAYERS] [WORK_DIR] [THREADS]
set -euo pipefail
build=${1:-build}
layers=${2:-4}
work=${3:-/tmp/moereg-bench-convert}
threads=${4:-0}
moereg="$(cd "$build" && pwd)/bin/moereg"
src="$work/hf_${layers}l"
mkdir -p "$work"
[[ -f "$src/config.json" ]] || { rm -rf "$src"; "$moereg" synth "$src" --preset qwen3_30b_a3b --layers "$layers" >/dev/null; }
bytes=$(du -sb "$src" | cut -f1)
warm() { cat "$1"/*.safetensors >/dev/null; }
run() {  # name, command...: prints seconds and peak RSS (KiB)
  local name=$1; shift
  /usr/bin/time -o "$work/time.txt" -f "%e %M" "$@" >/dev/null 2>&1
  echo "$name $(tail -1 "$work/time.txt")"
}
rm -rf "$work/cp" "$work/v5" "$work/back"
warm "$src"
r_cp=$(run cp cp -r "$src" "$work/cp")
rm -rf "$work/cp"; sync
warm "$src"
r_fwd=$(run hf_to_v5 "$moereg" convert "$src" "$work/v5" --to transformers_v5 --threads "$threads")
sync; warm "$work/v5"
r_back=$(run v5_to_hf "$moereg" convert "$work/v5" "$work/back" --to hf --threads "$threads")
sync
"$moereg" verify "$work/back" "$src" >/dev/null && echo "round trip verified bit-exact"
"$moereg" verify "$work/v5" "$src" >/dev/null && echo "transformers_v5 output verified against the source through layouts"
largest=$((128 * 2 * 768 * 2048 * 2))
cp_s=$(echo "$r_cp" | cut -d' ' -f2)
printf "\ncheckpoint: %s, %.2f GB, %s layers; %s cores; largest output tensor %.0f MiB\n" "$src" "$(echo "$bytes/1000000000" | bc -l)" "$layers" "$(nproc)" "$(echo "$largest/1048576" | bc -l)"
printf "%-10s %9s %11s %12s %13s\n" run seconds "x cp time" "GB/s" "peak RSS MiB"
for r in "$r_cp" "$r_fwd" "$r_back"; do
  set -- $r
  printf "%-10s %9.2f %11.2f %12.2f %13.0f\n" "$1" "$2" "$(echo "$2/$cp_s" | bc -l)" "$(echo "$bytes/$2/1000000000" | bc -l)" "$(echo "$3/1024" | bc -l)"
done
rm -rf "$work/v5" "$work/back"
