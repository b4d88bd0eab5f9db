#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets for the GGUF and safetensors header parsers with clang
# (ASan + UBSan, in build-fuzz) and runs each for FUZZ_SECONDS (default 60) from a small
# generated seed corpus plus the malformed corpora of the ctest MalformedCorpus
# (tests/support/malformed_corpus.cpp). Exits non-zero on any crash, sanitizer report or leak; the
# failing input is left in build-fuzz/artifacts/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOEREG_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}

CC=${CC_FUZZ:-clang} CXX=${CXX_FUZZ:-clang++} cmake -S "$root/tests/fuzz" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" fuzz_gguf_header fuzz_safetensors_header moereg_malformed_corpus

# Little-endian integers as printf escapes.
le() {  # le BYTES VALUE
  local n=$1 v=$2 out="" i
  for ((i = 0; i < n; i++)); do out+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255))); done
  printf '%s' "$out"
}
gstr() { printf '%s%s' "$(le 8 ${#1})" "$1"; }  # GGUF string: u64 length + bytes
zeros() { head -c "$1" /dev/zero; }

seeds=$build/seeds
rm -rf "$seeds" && mkdir -p "$seeds/gguf" "$seeds/safetensors" "$build/corpus/gguf" "$build/corpus/safetensors" "$build/artifacts"

# Every malformed file the ctest runs through the CLI (truncations, huge counts, bad offsets, ...).
"$build/moereg_malformed_corpus" "$seeds"

# GGUF: empty; two KVs and one F32 tensor; custom alignment, a string array, F16 + Q4_0.
printf "GGUF$(le 4 3)$(le 8 0)$(le 8 0)" >"$seeds/gguf/empty.gguf"
{
  printf "GGUF$(le 4 3)$(le 8 1)$(le 8 2)"
  printf "$(gstr general.architecture)$(le 4 8)$(gstr qwen3moe)"
  printf "$(gstr qwen3moe.expert_count)$(le 4 4)$(le 4 8)"
  printf "$(gstr token_embd.weight)$(le 4 2)$(le 8 4)$(le 8 2)$(le 4 0)$(le 8 0)"
} >"$seeds/gguf/one.gguf"
size=$(stat -c %s "$seeds/gguf/one.gguf")
{ zeros $(((32 - size % 32) % 32)); head -c 32 /dev/urandom; } >>"$seeds/gguf/one.gguf"
{
  printf "GGUF$(le 4 3)$(le 8 2)$(le 8 3)"
  printf "$(gstr general.alignment)$(le 4 4)$(le 4 64)"
  printf "$(gstr tokenizer.ggml.tokens)$(le 4 9)$(le 4 8)$(le 8 3)$(gstr a)$(gstr '<0x0A>')$(gstr '')"
  printf "$(gstr general.flag)$(le 4 7)$(le 1 1)"
  printf "$(gstr blk.0.ffn_gate_exps.weight)$(le 4 3)$(le 8 4)$(le 8 2)$(le 8 2)$(le 4 1)$(le 8 0)"
  printf "$(gstr blk.0.ffn_up_exps.weight)$(le 4 2)$(le 8 32)$(le 8 2)$(le 4 2)$(le 8 64)"
} >"$seeds/gguf/quant.gguf"
size=$(stat -c %s "$seeds/gguf/quant.gguf")
{ zeros $(((64 - size % 64) % 64)); head -c 100 /dev/urandom; } >>"$seeds/gguf/quant.gguf"

# safetensors: empty header; one F32 tensor with metadata; two BF16 tensors.
st() { printf "$(le 8 ${#1})%s" "$1"; }
st '{}' >"$seeds/safetensors/empty.safetensors"
{ st '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'; zeros 8; } \
  >"$seeds/safetensors/one.safetensors"
{ st '{"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]},"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}  '
  zeros 16; } >"$seeds/safetensors/two.safetensors"

cat >"$build/gguf.dict" <<'DICT'
"GGUF"
"general.alignment"
"general.architecture"
"\x03\x00\x00\x00"
"\x09\x00\x00\x00"
"\x08\x00\x00\x00"
DICT
cat >"$build/safetensors.dict" <<'DICT'
"__metadata__"
"dtype"
"shape"
"data_offsets"
"F32"
"BF16"
"F8_E4M3"
DICT

status=0
for kind in gguf safetensors; do
  echo "== fuzz_${kind}_header: ${seconds}s"
  if ! "$build/fuzz_${kind}_header" "$build/corpus/$kind" "$seeds/$kind" -dict="$build/$kind.dict" \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/${kind}-" 2>"$build/fuzz_$kind.log"; then
    echo "fuzz_${kind}_header FAILED; log: $build/fuzz_$kind.log"
    tail -40 "$build/fuzz_$kind.log"
    status=1
  else
    grep -E "^Done|stat::peak_rss_mb" "$build/fuzz_$kind.log" || true
  fi
done
exit $status
