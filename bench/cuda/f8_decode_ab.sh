#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# f8_decode_ab.sh - on the GPU machine, with .carry/ from bench/device/stage.sh: F8_E4M3
# experts at decode sizes (the exact-product kernels) on several builds of the CUDA backend,
# alternated round by round, and the bf16 layer of the same preset on the first build, so the
# issue's "F8 at most 0.6x bf16 at T = 1" reads off one table. `moe bench --backend cuda`,
# graphs=on (the replay of the captured forward). Environment: LIBS ("name=path ...", a path
# may end in ":key=value,key=value", backend options of its own, as in
# "gemv=$MOEREG_CUDA_BACKEND:f8_decode=gemv"; default the carried backend as "new"), PRESET (deepseek_v3_e64), TOKENS (1,16,128), ROUNDS (3),
# MIN_SECONDS (0.3), OPTIONS (more backend options, space-separated).
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
. bench/device/carry_env.sh
M=$PWD/.carry/bin/moereg
P=${PRESET:-deepseek_v3_e64}
libs=(${LIBS:-new=$MOEREG_CUDA_BACKEND})
work=$(mktemp -d)
opts=(--backend-option graphs=on); for o in ${OPTIONS:-}; do opts+=(--backend-option "$o"); done
run() {  # label, library[:option,option...], weights
  local lib=${2%%:*} extra=() o list=()
  [ "$lib" != "$2" ] && IFS=, read -ra list <<< "${2#*:}"
  for o in "${list[@]}"; do extra+=(--backend-option "$o"); done
  with_backend "$lib" timeout 200 "$M" moe bench --backend cuda --preset "$P" --weights "$3" --tokens "${TOKENS:-1,16,128}" \
    --min-seconds "${MIN_SECONDS:-0.3}" --no-reference --json --log-level warn "${opts[@]}" "${extra[@]}" > "$work/$1.json" 2> "$work/$1.err" ||
    { echo "$1 failed:"; tail -3 "$work/$1.err"; }
  ran_backend "$work/$1.json" "$lib" || mv "$work/$1.json" "$work/$1.wrong"
}
for round in $(seq "${ROUNDS:-3}"); do
  run "bf16_$round" "$(l=${libs[0]#*=}; echo "${l%%:*}")" bf16
  for l in "${libs[@]}"; do run "${l%%=*}_$round" "${l#*=}" f8_e4m3; done
done
python3 - "$work" "$P" "${libs[@]%%=*}" <<'PY'
import glob, json, statistics, sys
work, preset, names = sys.argv[1], sys.argv[2], ["bf16"] + sys.argv[3:]
runs = {}
for f in glob.glob(f"{work}/*.json"):
    name = f.rsplit("/", 1)[1].rsplit("_", 1)[0]
    try: rows = json.load(open(f))["rows"]
    except Exception as e: print(f, "unreadable:", e); continue
    for r in rows: runs.setdefault((name, r["tokens"]), []).append(r["seconds"] * 1e3)
print(f"{preset}, graphs=on: ms per forward, median of rounds [each round]; F8 / bf16 time")
for t in sorted({t for _, t in runs}):
    b = statistics.median(runs.get(("bf16", t), [float("nan")]))
    cells = []
    for n in names:
        v = runs.get((n, t), [])
        m = statistics.median(v) if v else float("nan")
        cells.append(f"{n} {m:.4f} [{' '.join(f'{x:.4f}' for x in v)}]" + ("" if n == "bf16" else f" {m / b:.3f}x"))
    print(f"T={t:5d}  " + "  |  ".join(cells))
PY
rm -rf "$work"
