#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# device_fp8.sh - on the GPU machine, with .carry/ from bench/device/stage.sh: F8_E4M3 experts
# on the CUDA backend, in one run.
#   1. moereg_cuda_tests: the FP8 tests (CudaFp8.*) and the ones the FP8 change touched.
#   2. The command line on the FP8 fixture (deepseek_v3_fp8/hf, layer 1, 64 random tokens):
#      `moe run --backend cuda` on the checkpoint as stored against `convert --dtype bf16` then
#      `moe run --backend cuda` (and --backend cpu on the FP8 checkpoint): same top-k sets, max
#      difference relative to the largest output (bound 1e-2: 64 tokens run on the exact-product
#      kernels, q x s unrounded, where the converted checkpoint holds bf16(q x s): the weights'
#      bf16 rounding is the difference, ~2e-3 measured).
#   3. `moe bench --backend cuda --preset deepseek_v3_e64` with --weights bf16 and f8_e4m3 at
#      T = 1, 16, 128, 1024, 4096 (PyTorch's eager loop on the GPU beside each), one table.
# Logs under $OUT. Environment: TOKENS, PRESETS, MIN_SECONDS, STEPS (default "tests cli bench"),
# BENCH_OPTS (more `moe bench` arguments, e.g. "--backend-option graphs=on").
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
here=$PWD
. bench/device/carry_env.sh
M=$here/.carry/bin/moereg
W=${TMPDIR:-/tmp}/moereg-fp8; rm -rf "$W"; mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
fail=0
for step in ${STEPS:-tests cli bench}; do
  t0=$(date +%s); echo "=== $step"
  case $step in
  tests)
    .carry/bin/moereg_cuda_tests --gtest_filter="${FILTER:-CudaFp8.*:CudaErrors.*:CudaOptions.*:CudaDeviceWeights.*:CudaRandom.*:CudaFixture.*}" \
      > "$OUT/fp8_tests.log" 2>&1 || fail=1
    grep -E "^\[  (PASSED|FAILED) |^\[ +(fp8|fixture) +\]|Failure|FAILED" "$OUT/fp8_tests.log" | head -40 ;;
  cli)
    f=.carry/fixtures/deepseek_v3_fp8/hf
    python3 - "$W/x.safetensors" <<'PY' || fail=1
import json, sys, torch
from safetensors.torch import save_file
H = json.load(open(".carry/fixtures/deepseek_v3_fp8/hf/config.json"))["hidden_size"]
save_file({"input": torch.randn(64, H, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)}, sys.argv[1])
PY
    "$M" convert "$f" "$W/bf16" --to hf --dtype bf16 --log-level warn || fail=1
    "$M" moe run "$f" --layer 1 --input "$W/x.safetensors" --output "$W/f8_cuda.safetensors" --backend cuda > "$W/f8_cuda.log" 2>&1 || { fail=1; cat "$W/f8_cuda.log"; }
    "$M" moe run "$f" --layer 1 --input "$W/x.safetensors" --output "$W/f8_cpu.safetensors" --backend cpu > "$W/f8_cpu.log" 2>&1 || { fail=1; cat "$W/f8_cpu.log"; }
    "$M" moe run "$W/bf16" --layer 1 --input "$W/x.safetensors" --output "$W/bf16_cuda.safetensors" --backend cuda > "$W/bf16_cuda.log" 2>&1 || { fail=1; cat "$W/bf16_cuda.log"; }
    grep -ih "backend\|experts" "$W/f8_cuda.log" | head -3
    python3 - "$W" <<'PY' || fail=1
import sys
from safetensors.torch import load_file
w = sys.argv[1]
a, c, b = (load_file(f"{w}/{n}.safetensors") for n in ("f8_cuda", "f8_cpu", "bf16_cuda"))
ref = b["output"].double()
def rel(o): return float((o["output"].double() - ref).abs().max() / ref.abs().max())
same = lambda x, y: all(set(p.tolist()) == set(q.tolist()) for p, q in zip(x["topk_ids"], y["topk_ids"]))
ok = rel(a) <= 1e-2 and same(a, b) and same(c, b)
print(f"FP8 fixture layer 1, 64 tokens: cuda F8 vs cuda on convert --dtype bf16: max diff / max {rel(a):.2e}; "
      f"cpu F8 vs it: {rel(c):.2e}; top-k sets equal {same(a, b)} {same(c, b)}: {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
    ;;
  bench)
    for p in ${PRESETS:-deepseek_v3_e64 qwen3_30b_a3b}; do
      for wt in bf16 f8_e4m3; do
        timeout 150 "$M" moe bench --backend cuda --preset "$p" --weights $wt --tokens "${TOKENS:-1,16,128,1024,4096}" \
          --min-seconds "${MIN_SECONDS:-0.3}" --reference-max-seconds 5 --json --log-level warn ${BENCH_OPTS:-} > "$OUT/bench_${p}_$wt.json" 2> "$OUT/bench_${p}_$wt.err" || { fail=1; tail -5 "$OUT/bench_${p}_$wt.err"; }
      done
    done
    python3 - "$OUT" ${PRESETS:-deepseek_v3_e64 qwen3_30b_a3b} <<'PY'
import json, sys
out = sys.argv[1]
print(f"{'preset':16s} {'T':>5s} | {'bf16 ms':>9s} {'of bw':>6s} | {'f8 ms':>9s} {'of bw':>6s} | {'f8/bf16':>7s} | {'torch ms':>9s} | f8 diff vs torch")
for p in sys.argv[2:]:
    try:
        b, f = (json.load(open(f"{out}/bench_{p}_{w}.json")) for w in ("bf16", "f8_e4m3"))
    except Exception as e:
        print(p, "missing:", e); continue
    for rb, rf in zip(b["rows"], f["rows"]):
        bw = lambda r: f"{(r.get('weight_bandwidth_fraction') or float('nan')) * 100:5.0f}%"
        t = rb.get("reference_seconds")
        print(f"{p:16s} {rb['tokens']:5d} | {rb['seconds']*1e3:9.4f} {bw(rb)} | {rf['seconds']*1e3:9.4f} {bw(rf)} | "
              f"{rf['seconds']/rb['seconds']:7.2f} | {t*1e3 if t else float('nan'):9.3f} | {rf.get('max_rel_diff_vs_reference')}")
print("f8 describe:", json.load(open(f"{out}/bench_{sys.argv[2]}_f8_e4m3.json")).get("describe", "")[:400])
PY
    ;;
  esac
  echo "=== $step took $(( $(date +%s) - t0 )) s"
done
rm -rf "$W"
echo "device_fp8: $([ $fail = 0 ] && echo all passed || echo FAILED)"
exit $fail
