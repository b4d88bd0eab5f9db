#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# variance.sh - why one CPU row's time moves between processes on one host (issue 19:
# mixtral_8x7b T = 1024 bf16 took 89-154 ms minutes apart on the GPU machine's Xeon while int8
# beside it stayed at 62-72 ms). Prints the CPU topology the guest sees (SMT siblings, sockets,
# the hypervisor, THP), then alternates CONFIGS for ROUNDS rounds, one `moe bench` process
# each, and gives every run: ms, GFLOP/s, the CPU time the hypervisor took from this guest
# while it ran (steal, /proc/stat, as a share of the run's CPU time), the read bandwidth the
# bench's probe measured in that process (all threads, just before the layer runs; "?" where
# the probe doubts its own figure) and how much of the tile-ordered weight copy the kernel backs with
# 2 MiB pages (describe's tile_weight_huge_page_bytes). Read across the runs: a time that
# follows steal or the probe's bandwidth is the host's neighbours; one that follows the
# huge-page share is the TLB; one that follows the threads (8 as fast as 16) is cores that share
# their matrix units. Session 23's runs: docs/bench-cpu.md.
# No PyTorch. Environment: MOEREG (.carry/bin/moereg, else build/bin/moereg), PRESET
# (mixtral_8x7b), TOKENS (1024), ROUNDS (4), MIN_SECONDS (0.5), CONFIGS ("|"-separated
# "[NAME=value ...] threads[ backend options]": environment first, e.g.
# MOEREG_PLUGIN_PATH=.carry/old_cpu to run another build's backends/libmoereg_backend_cpu.so;
# default "16|8|16 quantize=int8").
set -uo pipefail
M=${MOEREG:-$( [ -x .carry/bin/moereg ] && echo .carry/bin/moereg || echo build/bin/moereg )}
[ -d .carry/lib ] && export LD_LIBRARY_PATH=$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(nproc) cores"
lscpu | grep -E '^(Thread|Core|Socket|NUMA node\(s\)|Hypervisor|Virtualization type|L3)' | sed 's/  */ /g'
echo "SMT siblings (cpu0..3): $(for c in 0 1 2 3; do cat /sys/devices/system/cpu/cpu$c/topology/thread_siblings_list 2>/dev/null | tr '\n' ' '; done)"
echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null); defrag $(cat /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null)"
IFS='|' read -r -a configs <<< "${CONFIGS:-16|8|16 quantize=int8}"
err=$(mktemp); js=$(mktemp); trap 'rm -f "$err" "$js"' EXIT
cpu_ticks() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print t, $9}' /proc/stat; }  # total, steal
printf '%5s  %-24s %9s %8s %7s %8s %11s\n' round config ms GFLOP/s steal% "bw GB/s" "huge MB"
for r in $(seq 1 "${ROUNDS:-4}"); do
  for c in "${configs[@]}"; do
    envs=(); set -- $c
    while [[ $# -gt 0 && $1 == *=* ]]; do envs+=("$1"); shift; done
    threads=${1:-16}; shift; rest="$*"
    opts=(); for o in $rest; do opts+=(--backend-option "$o"); done
    read -r t0 s0 <<< "$(cpu_ticks)"
    env "${envs[@]}" "$M" moe bench --backend cpu --preset "${PRESET:-mixtral_8x7b}" --tokens "${TOKENS:-1024}" --threads "$threads" \
      --min-seconds "${MIN_SECONDS:-0.5}" --no-reference --log-level warn --json "${opts[@]}" >"$js" 2>"$err"
    rc=$?; [ $rc -eq 0 ] || tail -2 "$err"
    read -r t1 s1 <<< "$(cpu_ticks)"
    python3 - "$r" "$c" "$rc" "$((t1 - t0))" "$((s1 - s0))" "$js" <<'EOF'
import json, sys
r, c, rc, dt, ds, path = sys.argv[1:]
try:
    d = json.load(open(path)); row = d["rows"][0]
    b = d.get("backend_describe"); b = json.loads(b) if isinstance(b, str) else (b or {})
    huge = "%.0f/%.0f" % (b.get("tile_weight_huge_page_bytes", 0) / 1e6, b.get("tile_weight_bytes", 0) / 1e6)
    bw = d.get("read_bandwidth_bytes_per_second", 0) / 1e9
    doubt = "?" if d.get("read_bandwidth_doubt") else " "  # the probe's own doubt (moe bench prints no "of bw" then)
    print("%5s  %-24s %9.2f %8.0f %7.2f %7.1f%s %11s" % (r, c, row["seconds"] * 1e3, row["gflops"], 100 * int(ds) / max(1, int(dt)), bw, doubt, huge))
except Exception as e:
    print("%5s  %-24s failed (rc %s): %s" % (r, c, rc, e))
EOF
  done
done
