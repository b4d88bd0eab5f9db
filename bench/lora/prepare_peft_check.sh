#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prepares the inputs of peft_check.py (run on the GPU machine, which has PEFT 0.21 and
# transformers 5.17): for each LoRA fixture family, the base model, the reference logits and
# the fixture adapters converted by moereg into every form PEFT loads, including via NeMo's
# grouped form and a per-expert adapter whose gate and up carry different A (fused by moereg
# into a block-diagonal rank-2r ParamWrapper pair).
#
#   bench/lora/prepare_peft_check.sh [OUT]        (default OUT: build/lora_peft, well under 1 MiB)
#   python3 bench/lora/peft_check.py build/lora_peft   (on the device; see docs/lora.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
MOEREG=${MOEREG:-build/bin/moereg}
FIX=${FIXTURES:-../shared/fixtures}
OUT=${1:-build/lora_peft}
rm -rf "$OUT"
mkdir -p "$OUT"
checks=()
for f in qwen3_moe mixtral deepseek_v3; do
  d="$OUT/$f"
  mkdir -p "$d"
  cp -r "$FIX/$f/hf" "$d/hf"
  cp "$FIX/lora/$f/logits.safetensors" "$d/logits.safetensors"
  cp -r "$FIX/lora/$f/peft_param_wrapper" "$d/fixture_pw"
  cp -r "$FIX/lora/$f/peft_per_expert" "$d/fixture_pe"
  b=(--base "$d/hf" --log-level warn)
  "$MOEREG" lora convert "$d/fixture_pw" "$d/pe_from_pw" --to peft_per_expert "${b[@]}"
  "$MOEREG" lora convert "$d/fixture_pe" "$d/pw_from_pe" --to peft_param_wrapper "${b[@]}"
  "$MOEREG" lora convert "$d/fixture_pw" "$d/nemo" --to nemo_grouped "${b[@]}"
  "$MOEREG" lora convert "$d/nemo" "$d/pw_from_nemo" --to peft_param_wrapper "${b[@]}"
  "$MOEREG" lora convert "$d/nemo" "$d/pe_from_nemo" --to peft_per_expert "${b[@]}"
  python3 bench/lora/peft_check.py --make-distinct-up "$d/fixture_pe" "$d/pe_distinct"
  "$MOEREG" lora convert "$d/pe_distinct" "$d/pw_blockdiag" --to peft_param_wrapper "${b[@]}"
  "$MOEREG" lora convert "$d/pe_distinct" "$d/nemo_blockdiag" --to nemo_grouped "${b[@]}"
  "$MOEREG" lora convert "$d/nemo_blockdiag" "$d/pw_blockdiag_from_nemo" --to peft_param_wrapper "${b[@]}"
  for a in fixture_pw fixture_pe pe_from_pw pw_from_pe pw_from_nemo pe_from_nemo; do
    checks+=("{\"family\": \"$f\", \"adapter\": \"$f/$a\", \"reference\": \"logits_adapter\"}")
  done
  for a in pw_blockdiag pw_blockdiag_from_nemo; do
    checks+=("{\"family\": \"$f\", \"adapter\": \"$f/$a\", \"reference\": \"$f/pe_distinct\"}")
  done
done
{
  echo "{\"made_with\": \"$("$MOEREG" --version 2>/dev/null | head -1)\", \"checks\": ["
  for i in "${!checks[@]}"; do
    sep=","
    [ "$i" -eq $((${#checks[@]} - 1)) ] && sep=""
    echo "  ${checks[$i]}$sep"
  done
  echo "]}"
} > "$OUT/manifest.json"
python3 bench/lora/peft_check.py --self-test "$OUT"
echo "prepared $OUT ($(du -sh "$OUT" | cut -f1)); on the device: python3 bench/lora/peft_check.py $OUT"
