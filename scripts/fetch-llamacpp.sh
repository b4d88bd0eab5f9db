#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs llama.cpp's prebuilt CPU libraries for the tests that load moereg's .gguf files in
# real llama.cpp (tests/llamacpp/). Pinned: the npm packages @node-llama-cpp/linux-x64 and
# node-llama-cpp of one release (the second ships that release's llama.cpp source, from which
# the headers and llama.cpp's vocab-only GGUFs are taken). Nothing is built.
#
# Result (git-ignored): third_party/llamacpp/{lib,include,vocab}/ and a VERSION stamp.
# Idempotent: a complete install of the pinned version is left alone. Exits non-zero when it
# cannot install (no npm, no registry); the tests then skip and say why.
set -euo pipefail
version=3.22.1
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${MOEREG_LLAMACPP_DIR:-$root/third_party/llamacpp}"

if [[ "$(cat "$dest/VERSION" 2>/dev/null)" == "$version" ]]; then
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "fetch-llamacpp: only linux x86_64 has a prebuilt CPU package; llama.cpp tests will skip" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "fetch-llamacpp: npm not found; llama.cpp tests will skip" >&2; exit 1; }
command -v git >/dev/null || { echo "fetch-llamacpp: git not found; llama.cpp tests will skip" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch-llamacpp: npm pack @node-llama-cpp/linux-x64@$version node-llama-cpp@$version"
(cd "$work" && npm pack --silent "@node-llama-cpp/linux-x64@$version" "node-llama-cpp@$version" >/dev/null)
mkdir -p "$work/bin" "$work/src"
tar xzf "$work/node-llama-cpp-linux-x64-$version.tgz" -C "$work/bin" package/bins/linux-x64
tar xzf "$work/node-llama-cpp-$version.tgz" -C "$work/src" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
git clone -q --bare "$work/src/package/llama/gitRelease.bundle" "$work/llama.git"
mkdir -p "$work/tree"
git --git-dir="$work/llama.git" archive HEAD include ggml/include models | tar x -C "$work/tree"

rm -rf "$dest.partial"
mkdir -p "$dest.partial/lib" "$dest.partial/include" "$dest.partial/vocab"
cp "$work"/bin/package/bins/linux-x64/*.so "$dest.partial/lib/"
cp "$work"/tree/include/*.h "$work"/tree/ggml/include/*.h "$dest.partial/include/"
cp "$work"/tree/models/ggml-vocab-*.gguf "$dest.partial/vocab/"
cp "$work/src/package/llama/llama.cpp.info.json" "$dest.partial/"
echo "$version" > "$dest.partial/VERSION"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$dest.partial" "$dest"
echo "fetch-llamacpp: installed node-llama-cpp $version (llama.cpp $(grep -o '"tag": *"[^"]*"' "$dest/llama.cpp.info.json" | cut -d'"' -f4)) in $dest"
