#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# thread_scaling.sh - how the CPU backend's bf16 layer scales with threads on the machine at
# hand (the compute-bound rows of issue 19 are where per-core rate matters): `moe bench
# --backend cpu --threads N` for each N, one table of ms and GFLOP/s per thread, no PyTorch.
# Environment: MOEREG (.carry/bin/moereg, else build/bin/moereg), PRESETS (mixtral_8x7b
# deepseek_v3_e64), TOKENS (1024), THREADS (1 2 4 8 16), MIN_SECONDS (0.5), OPTIONS (extra
# --backend-option key=value entries, space-separated). Each row is followed by the backend's
# phase times of its last forward (option phases=1): where a phase stops scaling shows there,
# and, where the backend made a tile-ordered copy of the weights, how much of it the kernel
# backs with huge pages (describe's tile_weight_huge_page_bytes).
set -uo pipefail
M=${MOEREG:-$( [ -x .carry/bin/moereg ] && echo .carry/bin/moereg || echo build/bin/moereg )}
[ -d .carry/lib ] && export LD_LIBRARY_PATH=$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
err=$(mktemp); trap 'rm -f "$err"' EXIT
opts=(--backend-option phases=1); for o in ${OPTIONS:-}; do opts+=(--backend-option "$o"); done
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores"
printf '%-16s %6s %7s %10s %10s %14s\n' preset T threads ms GFLOP/s "GFLOP/s/thread"
for p in ${PRESETS:-mixtral_8x7b deepseek_v3_e64}; do
  for n in ${THREADS:-1 2 4 8 16}; do
    "$M" moe bench --backend cpu --preset "$p" --tokens "${TOKENS:-1024}" --threads "$n" \
      --min-seconds "${MIN_SECONDS:-0.5}" --no-reference --log-level warn --json "${opts[@]}" 2>"$err" |
    python3 -c '
import json, sys
d, n = json.load(sys.stdin), int(sys.argv[1])
for r in d["rows"]:
    print("%-16s %6d %7d %10.2f %10.0f %14.0f" % (d["preset"], r["tokens"], n, r["seconds"] * 1e3, r["gflops"], r["gflops"] / n))
b = d.get("backend_describe")
b = json.loads(b) if isinstance(b, str) else (b or {})
if b.get("tile_weight_bytes"):  # how much of the tile-ordered copy sits in 2 MiB pages
    print("    tile-ordered copy: %.0f MB, %.0f MB of it in huge pages" % (b["tile_weight_bytes"] / 1e6, b.get("tile_weight_huge_page_bytes", 0) / 1e6))
' "$n"
    # The engine's phases (sort, pack, gate/up, down, sum) of the last forward, from the backend.
    grep -o 'phases, ms: [^;]*' "$err" | tail -1 | sed 's/^/    /'
  done
done
