#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ncu_decode.sh - on the GPU machine (carry .carry from bench/device/stage.sh): Nsight Compute's
# time, DRAM throughput and grid of each kernel of a few forwards of `moe bench --backend cuda`,
# one line a kernel launch, so a decode forward's parts can be read off (ncu serializes kernels:
# what overlaps in a real forward is listed one after the other).
#   CASES="qwen3_30b_a3b:bf16:1 deepseek_v3_e64:f8_e4m3:1" bash bench/cuda/ncu_decode.sh
# A case is PRESET:WEIGHTS:T. SKIP (default 40) launches are skipped first (the bench's warm-up),
# then COUNT (default 8) are profiled; past 40 launches only the totals by kernel name are
# printed. Logs (CSV) under $OUT.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
M="gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,launch__grid_size"
for c in ${CASES:-qwen3_30b_a3b:bf16:1 deepseek_v3_e64:bf16:1 deepseek_v3_e64:f8_e4m3:1}; do
  IFS=: read -r preset weights T <<< "$c"
  echo "== $preset $weights T=$T"
  csv=$OUT/ncu_${preset}_${weights}_$T.csv
  timeout 150 "$NCU" --cache-control none --clock-control none --launch-skip "${SKIP:-40}" --launch-count "${COUNT:-8}" \
    --metrics "$M" --csv .carry/bin/moereg moe bench --backend cuda --preset "$preset" --weights "$weights" --tokens "$T" \
    --no-reference --min-seconds 0.05 --log-level warn > "$csv" 2>&1
  python3 - "$csv" <<'PY'
import csv, collections, sys
lines = open(sys.argv[1]).read().splitlines()
start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
if start is None:
    print("\n".join(lines[-5:])); sys.exit(0)
rows = list(csv.reader(lines[start:]))
h = rows[0]; col = {k: h.index(k) for k in ("ID", "Kernel Name", "Metric Name", "Metric Value")}
k = collections.OrderedDict()
for r in rows[1:]:
    if len(r) == len(h):
        k.setdefault((r[col["ID"]], r[col["Kernel Name"]].split("(")[0][-44:]), {})[r[col["Metric Name"]]] = r[col["Metric Value"]]
if len(k) <= 40:
    for (i, name), m in k.items():
        print(f"{i:>3} {name:44s} {m.get('gpu__time_duration.sum', '?'):>9} ns  dram {m.get('dram__throughput.avg.pct_of_peak_sustained_elapsed', '?'):>6} %  "
              f"read {m.get('dram__bytes_read.sum', '?'):>14} B  grid {m.get('launch__grid_size', '?')}")
# Totals by kernel name over all the launches profiled (a long forward has too many to list).
tot = collections.defaultdict(lambda: [0, 0.0])
for (i, name), m in k.items():
    tot[name][0] += 1
    tot[name][1] += float(m.get('gpu__time_duration.sum', '0').replace(',', ''))
for name, (n, ns) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print(f"  total {ns / 1e3:10.1f} us  {n:4d} launches  {name}")
PY
done
