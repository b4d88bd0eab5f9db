#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# cli_check.sh - on the GPU machine, with .carry/ from bench/device/stage.sh: `moereg moe run`
# through the command line on every fixture, with --backend cuda and --backend cpu, compared
# with the fixture's transformers output (relative L2) and with each other (top-k id sets).
set -uo pipefail
here=$(pwd)
export LD_LIBRARY_PATH=$here/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
M=$here/.carry/bin/moereg
W=${TMPDIR:-/tmp}/moereg-cli-check
rm -rf "$W"; mkdir -p "$W"
fail=0
for fam in qwen3_moe qwen3_vl_moe qwen3_5_moe mixtral deepseek_v2 deepseek_v3; do
  f=$here/.carry/fixtures/$fam
  layer=$(python3 -c "import json,re;print(re.search(r'layers\.(\d+)\.', json.load(open('$f/fixture.json'))['moe_block']).group(1))")
  for dir in hf hub; do
    [ -d "$f/$dir" ] || continue
    for be in cuda cpu; do
      "$M" moe run "$f/$dir" --layer "$layer" --input "$f/moe_block.safetensors" --output "$W/$fam-$dir-$be.safetensors" --backend $be \
        > "$W/$fam-$dir-$be.log" 2>&1 || { echo "FAIL: $fam/$dir --backend $be exited $?"; cat "$W/$fam-$dir-$be.log"; fail=1; }
    done
    python3 - "$f/moe_block.safetensors" "$W/$fam-$dir-cuda.safetensors" "$W/$fam-$dir-cpu.safetensors" "$fam/$dir" "$W/$fam-$dir-cuda.log" <<'PY' || fail=1
import sys
from safetensors.torch import load_file
ref, cu, cp = (load_file(p) for p in sys.argv[1:4])
r = ref["output"].double()
rel = lambda o: float((o["output"].double() - r).norm() / r.norm())
same = all(set(a.tolist()) == set(b.tolist()) for a, b in zip(cu["topk_ids"], cp["topk_ids"]))
fx = all(set(a.tolist()) == set(b.tolist()) for a, b in zip(cu["topk_ids"], ref["topk_ids"]))
backend_line = [l for l in open(sys.argv[5]) if "backend" in l.lower()][:1]
ok = rel(cu) <= 1e-2 and same and fx
print(f"{sys.argv[4]:22s} cuda rel L2 {rel(cu):.2e}  cpu rel L2 {rel(cp):.2e}  top-k sets cuda==cpu {same} cuda==fixture {fx}  {'ok' if ok else 'FAIL'}  | {backend_line[0].strip() if backend_line else ''}")
sys.exit(0 if ok else 1)
PY
  done
done
echo "cli_check: $([ $fail = 0 ] && echo all passed || echo FAILED)"
exit $fail
