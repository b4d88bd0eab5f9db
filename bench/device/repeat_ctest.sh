#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# repeat_ctest.sh - on the GPU host, with .carry/ from stage_ctest.sh: the whole suite of each
# carried build run again and again by `ctest --repeat until-fail:R -j2` on 2 cores at a time,
# those 2 cores also kept busy by SPIN spinning processes (default 1: a loaded 2-core machine,
# as CI is). PAIRS pairs of cores per build (default 4), R repetitions each (default 5), so
# PAIRS x R runs of the suite per build; EXCLUDE a ctest regex of tests that need what was not
# carried. Leave two cores free: 8 pairs with 2 spinners each starved the host until it stopped
# answering.
set -u
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
here=$(pwd)
[ -e /work/main ] || { mkdir -p /work && ln -s "$here" /work/main; }
mkdir -p /work/shared; [ -e /work/shared/fixtures ] || ln -s "$here/.carry/fixtures" /work/shared/fixtures
export LD_LIBRARY_PATH=$here/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
PAIRS=${PAIRS:-4}; R=${R:-5}; LIMIT=${LIMIT:-540}; SPIN=${SPIN:-1}
builds=$(cd .carry && ls *.tar.xz | sed 's/.tar.xz$//')
for b in $builds; do tar -xJf ".carry/$b.tar.xz"; done
core=0; pids=()
for b in $builds; do
  for ((p = 0; p < PAIRS; ++p)); do
    c="$core,$((core + 1))"; core=$((core + 2))
    for ((k = 0; k < SPIN; ++k)); do taskset -c "$c" sh -c 'while :; do :; done' & done
    ( timeout "$LIMIT" taskset -c "$c" ctest --test-dir "$b" --repeat until-fail:"$R" -j2 --output-on-failure \
        ${EXCLUDE:+-E "$EXCLUDE"} > "$OUT/$b-pair$p.log" 2>&1; echo "rc $?" >> "$OUT/$b-pair$p.log" ) &
    pids+=($!)
  done
done
wait "${pids[@]}"
pkill -f 'while :; do :; done'
for f in "$OUT"/*-pair*.log; do
  echo "$(basename "$f"): $(grep -E 'tests passed|tests failed' "$f" | tail -1); $(tail -1 "$f"); failed: $(grep -cE '\*\*\*Failed|Timeout|Exception' "$f")"
  grep -E '\*\*\*Failed|Timeout|SEGFAULT|Exception' "$f" | sort | uniq -c | head -5
done
