#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Opening a checkpoint reads headers only. Writes a synthetic Qwen3-30B-A3B-shaped checkpoint
# (E=128 H=2048 I=768; LAYERS layers, about 1.2 GB each), evicts it from the page cache, then
# times `moereg inspect` against reading just the files' headers with head -c (the least any
# reader must do), and shows with fincore how much of the files inspect brought into memory.
# usage: bench/inspect/run.sh [BUILD_DIR] [LAYERS] [WORK_DIR]
set -euo pipefail
build=${1:-build}
layers=${2:-8}
work=${3:-/tmp/moereg-bench-inspect}
moereg="$build/bin/moereg"
ckpt="$work/qwen3_30b_a3b_${layers}l"
if [[ ! -f "$ckpt/config.json" ]]; then
  rm -rf "$ckpt"
  mkdir -p "$work"
  "$moereg" synth "$ckpt" --preset qwen3_30b_a3b --layers "$layers" --shard-size 5000000000
fi
evict() { /usr/bin/python3 - "$ckpt" <<'PY'
import os, sys
for f in os.listdir(sys.argv[1]):
    fd = os.open(os.path.join(sys.argv[1], f), os.O_RDONLY)
    os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
PY
}
headers() {  # read exactly the 8-byte length and the JSON header of every shard
  for f in "$ckpt"/*.safetensors; do
    n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
    head -c $((8 + n)) "$f" >/dev/null
  done
}
now() { date +%s.%N; }
total=$(du -sb "$ckpt" | cut -f1)
echo "checkpoint: $ckpt ($((total / 1000000)) MB, $(ls "$ckpt"/*.safetensors | wc -l) shards)"
printf "%-34s %10s %10s\n" "run" "cold (s)" "warm (s)"
evict; t0=$(now); headers; t1=$(now); headers; t2=$(now)
hc=$(echo "$t1 - $t0" | bc); hw=$(echo "$t2 - $t1" | bc)
printf "%-34s %10.4f %10.4f\n" "head -c of each header (reference)" "$hc" "$hw"
evict; t0=$(now); "$moereg" inspect "$ckpt" >/dev/null; t1=$(now); "$moereg" inspect --json "$ckpt" >/dev/null; t2=$(now)
ic=$(echo "$t1 - $t0" | bc); iw=$(echo "$t2 - $t1" | bc)
printf "%-34s %10.4f %10.4f\n" "moereg inspect" "$ic" "$iw"
printf "ratio inspect/headers: cold %.2f, warm %.2f\n" "$(echo "$ic / $hc" | bc -l)" "$(echo "$iw / $hw" | bc -l)"
evict; "$moereg" inspect "$ckpt" >/dev/null
echo "page cache after a cold inspect (fincore: resident bytes per file):"
fincore "$ckpt"/*.safetensors
