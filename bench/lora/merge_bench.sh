#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Merging a rank-16 adapter on every expert into a Qwen3-30B-A3B-shaped synthetic checkpoint
# of 8 layers, against `cp -r` of the base in the same run (docs/lora.md, "Benchmark").
#
#   bench/lora/merge_bench.sh [WORK_DIR] [LAYERS] [RANK]   (defaults: /tmp/moereg_lora_bench 8 16)
#
# Needs about 3x the base's size (10 GB) free in WORK_DIR. Prints one line per step with the
# wall time and the peak RSS (GNU time), then the ratio merge / cp and the limit 256 MiB plus
# the largest tensor. cp and merge alternate twice, each reading a base that is in the page
# cache after the first pass (both then measure the same thing: the write path).
set -euo pipefail
cd "$(dirname "$0")/../.."
MOEREG=${MOEREG:-$PWD/build/bin/moereg}
WORK=${1:-/tmp/moereg_lora_bench}
LAYERS=${2:-8}
RANK=${3:-16}
rm -rf "$WORK"
mkdir -p "$WORK"
"$MOEREG" synth "$WORK/base" --preset qwen3_30b_a3b --layers "$LAYERS" --shard-size 5000000000 --lora "$RANK" --log-level warn
measure() {  # name, command...: prints "name seconds peak_kib"
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > /dev/null
  echo "$name $(cat "$WORK/time.txt")"
}
largest=$(python3 - "$WORK/base" <<'PY'
import json, struct, sys, glob
m = 0
for f in glob.glob(sys.argv[1] + "/*.safetensors"):
    with open(f, "rb") as h:
        n = struct.unpack("<Q", h.read(8))[0]
        hdr = json.loads(h.read(n))
    for k, v in hdr.items():
        if k != "__metadata__":
            m = max(m, v["data_offsets"][1] - v["data_offsets"][0])
print(m)
PY
)
cat "$WORK/base"/*.safetensors > /dev/null  # warm the page cache once
for round in 1 2; do
  rm -rf "$WORK/copy" "$WORK/merged"; sync
  measure "cp_r_$round" cp -r "$WORK/base" "$WORK/copy"
  sync
  measure "merge_$round" "$MOEREG" lora merge "$WORK/base" "$WORK/base-lora" "$WORK/merged" --log-level warn
  sync
done | tee "$WORK/results.txt"
python3 - "$WORK/results.txt" "$largest" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
t = {r[0]: (float(r[1]), int(r[2])) for r in rows}
cp = min(t["cp_r_1"][0], t["cp_r_2"][0])
mg = min(t["merge_1"][0], t["merge_2"][0])
rss = max(t["merge_1"][1], t["merge_2"][1]) * 1024
limit = 256 * 2**20 + int(sys.argv[2])
print("cp -r %.2f s, merge %.2f s: ratio %.2f (target <= 1.5)" % (cp, mg, mg / cp))
print("merge peak RSS %.1f MiB, limit %.1f MiB (256 MiB + largest tensor %.1f MiB): %s" % (
    rss / 2**20, limit / 2**20, int(sys.argv[2]) / 2**20, "ok" if rss < limit else "OVER"))
PY
du -sh "$WORK/base" "$WORK/base-lora"
nproc
