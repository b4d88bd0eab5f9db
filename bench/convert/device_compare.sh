#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# On a GPU host with PyTorch and transformers 5 (the lent device machine): moereg's
# hf -> transformers_v5 conversion beside `cp -r`, a safetensors+torch merge script and
# transformers 5 load+save, in one run on one checkpoint (E=128 H=2048 I=768, LAYERS layers),
# page cache warm; then checks that transformers loads moereg's output bit for bit.
# Needs .carry/ from bench/device/stage.sh (run_all.sh runs this as its convert step). usage: device_compare.sh [LAYERS]
set -uo pipefail
layers=${1:-5}
here=$(pwd)
export LD_LIBRARY_PATH=$here/.carry/lib:${LD_LIBRARY_PATH:-}
M=$here/.carry/bin/moereg
W=${TMPDIR:-/tmp}/moereg-convert-compare
rm -rf "$W"; mkdir -p "$W"
nproc; free -g | head -2; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
$M synth "$W/hf" --preset qwen3_30b_a3b --layers "$layers" || exit 1
T="python3 $here/bench/convert/run_timed.py"
warm() { cat "$W"/hf/*.safetensors > /dev/null; }
res=$W/results.txt; : > "$res"
warm; $T cp -- cp -r "$W/hf" "$W/cp" >> "$res"; rm -rf "$W/cp"; sync
warm; $T moereg -- "$M" convert "$W/hf" "$W/moereg" --to transformers_v5 >> "$res"; sync
warm; $T moereg_back -- "$M" convert "$W/moereg" "$W/moereg_back" --to hf >> "$res"; rm -rf "$W/moereg_back"; sync
for t in 1 4; do
  warm; $T moereg_t$t -- "$M" convert "$W/hf" "$W/m$t" --to transformers_v5 --threads $t >> "$res"; rm -rf "$W/m$t"; sync
done
warm; $T moereg_pwrite -- "$M" convert "$W/hf" "$W/mp" --to transformers_v5 --no-copy-file-range >> "$res"; rm -rf "$W/mp"; sync
warm; $T moereg_shards1G -- "$M" convert "$W/hf" "$W/ms" --to transformers_v5 --shard-size 1GB >> "$res"; rm -rf "$W/ms"; sync
warm; $T moereg_1file -- "$M" convert "$W/hf" "$W/m1" --to transformers_v5 --shard-size 0 >> "$res"; rm -rf "$W/m1"; sync
warm; $T moereg_1f_1t -- "$M" convert "$W/hf" "$W/m1" --to transformers_v5 --shard-size 0 --threads 1 >> "$res"; rm -rf "$W/m1"; sync
warm; $T cp_again -- cp -r "$W/hf" "$W/cp" >> "$res"; rm -rf "$W/cp"; sync
warm; "$M" convert "$W/hf" "$W/mj" --to transformers_v5 --json --log-level debug > "$W/mj.json" 2> "$W/mj.log"; rm -rf "$W/mj"; sync
grep -E "seconds|bytes_per" "$W/mj.json"; grep -iE "plan|took|open" "$W/mj.log" | head -20
warm; $T python_merge -- python3 "$here/bench/convert/python_merge.py" "$W/hf" "$W/merge" >> "$res"; sync
warm; $T transformers5 -- python3 "$here/bench/convert/transformers_save.py" "$W/hf" "$W/t5" >> "$res"; sync
"$M" verify "$W/merge/model.safetensors" "$W/moereg" && echo "python merge output == moereg output"
"$M" verify "$W/t5/model.safetensors" "$W/moereg" && echo "transformers 5 output == moereg output"
python3 "$here/bench/convert/check_transformers_load.py" "$W/hf" "$W/moereg"
bytes=$(du -sb "$W/hf" | cut -f1)
df -hT "$W" | tail -1
echo
awk -v bytes="$bytes" -v cores="$(nproc)" -v layers="$layers" '
  BEGIN { printf "checkpoint %.2f GB (%s layers), %s cores\n", bytes / 1e9, layers, cores;
          printf "%-14s %9s %9s %14s %12s %8s %8s\n", "run", "seconds", "x cp", "peak RSS MiB", "x model size", "user s", "sys s" }
  { name[NR] = $1; s[NR] = $2; rss[NR] = $3; rc[NR] = $4; us[NR] = $5; sy[NR] = $6; if ($1 == "cp") cp = $2 }
  END { for (i = 1; i <= NR; i++)
          printf "%-14s %9.2f %9.2f %14.0f %12.2f %8.2f %8.2f %s\n", name[i], s[i], s[i] / cp, rss[i], rss[i] * 1048576 / bytes, us[i], sy[i], (rc[i] == 0 ? "" : "FAILED") }' "$res"
