#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# variant_build.sh NAME [REV] [-DMACRO[=VALUE] ...] - here, after `cmake --build build` and
# bench/device/stage.sh: another build of the CUDA backend, into .carry/old/NAME.so, for the
# device A/B scripts (f8_gemm_ab.sh's VARIANTS, f8_decode_ab.sh's LIBS). The backend's sources
# (backends/cuda/src, and the ABI headers of core/include) come from commit REV (default: the
# working tree; a file added since REV is left out of the link); each object whose source,
# or any header beside it, differs from the build's is compiled again with the build's own nvcc
# command, as is each source that names one of the -D macros (with the macros added); then the
# build's own link command makes the library. The build and its library are not touched.
# PATCH (a `git diff` file, e.g. bench/cuda/experiments/*.patch) is applied to those sources
# first: an experiment kept beside the tree rather than in the library's source (a patch
# written against another commit is applied to that REV).
# On the device the moereg CLI loads NAME.so only through bench/device/carry_env.sh's
# with_backend (the CLI finds backends by directory; it never reads $MOEREG_CUDA_BACKEND).
# Environment: BUILD_DIR (build), PATCH.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: variant_build.sh NAME [REV] [-DMACRO[=VALUE] ...]" >&2; exit 2; }
name=$1; shift
rev=""
if [[ $# -gt 0 && $1 != -D* ]]; then rev=$1; shift; fi
defines=("$@")
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/${BUILD_DIR:-build}
src=$root/backends/cuda/src
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
vsrc=$src
if [ -n "$rev" ] || [ -n "${PATCH:-}" ]; then
  mkdir -p "$tmp/backends/cuda"
  if [ -n "$rev" ]; then git -C "$root" archive "$rev" backends/cuda/src | tar -x -C "$tmp"
  else cp -r "$src" "$tmp/backends/cuda/"; fi
  vsrc=$tmp/backends/cuda/src
  if [ -n "${PATCH:-}" ]; then
    patch=$(readlink -f "$PATCH")
    (cd "$tmp" && git apply --include='backends/cuda/src/*' "$patch") ||
      { echo "variant_build.sh: $PATCH does not apply to ${rev:-the working tree}" >&2; exit 1; }
  fi
fi
headers_differ=0
for h in "$src"/*.cuh "$src"/*.h "$vsrc"/*.cuh "$vsrc"/*.h; do
  cmp -s "$src/${h##*/}" "$vsrc/${h##*/}" || headers_differ=1
done
# REV's plugin ABI headers too (core/include): a backend of an older plugin API must say so.
vinc=$root/core/include
if [ -n "$rev" ]; then
  git -C "$root" archive "$rev" core/include | tar -x -C "$tmp"
  diff -rq "$root/core/include" "$tmp/core/include" > /dev/null || { headers_differ=1; vinc=$tmp/core/include; }
fi
cd "$build"
lib=lib/moereg/backends/libmoereg_backend_cuda.so
cmds=$(ninja -t commands moereg_backend_cuda)
link="$(grep -F -- "-o $lib" <<< "$cmds") "
[[ $link == *"-o $lib "* ]] || { echo "variant_build.sh: no link command for the CUDA backend in $build" >&2; exit 1; }
compiled=0
while read -r c; do
  c="$c "
  obj=$(sed -n 's/.* -o \([^ ]*\.cu\.o\) $/\1/p' <<< "$c")
  file=$(sed -n 's/.* -c \([^ ]*\.cu\) .*/\1/p' <<< "$c")
  [[ -n $obj && -n $file && $file == "$src/"* ]] || { echo "variant_build.sh: cannot read the command: $c" >&2; exit 1; }
  base=${file##*/}
  if [ ! -f "$vsrc/$base" ]; then  # a file added since REV: linked without it
    [ -n "$rev" ] || { echo "variant_build.sh: $base is not in the working tree" >&2; exit 1; }
    echo "leaving out $base (not in $rev)"
    link=${link// $obj / }
    continue
  fi
  need=$headers_differ
  cmp -s "$file" "$vsrc/$base" || need=1
  for d in "${defines[@]}"; do
    m=${d#-D}; m=${m%%=*}
    grep -qw -- "$m" "$vsrc/$base" && need=1
  done
  [ "$need" = 1 ] || continue
  new=$tmp/${obj//\//_}
  c=${c//$src\//$vsrc/}
  c=${c//-I$root\/core\/include /-I$vinc }
  c=${c//-MF $obj.d /-MF $new.d }
  c=${c//-o $obj /-o $new }
  c=${c/ -x cu / ${defines[*]} -x cu }
  echo "compiling $base${rev:+ as of $rev}${PATCH:+ + $PATCH}${defines:+ with ${defines[*]}}"
  eval "$c"
  link=${link// $obj / $new }
  compiled=$((compiled + 1))
done < <(grep -F -- " -x cu -c " <<< "$cmds")
[ "$compiled" -gt 0 ] || echo "variant_build.sh: nothing differs from the build; NAME.so is the build's library"
link=${link//-o $lib /-o $tmp/variant.so }
eval "$link"
mkdir -p "$root/.carry/old"
cp "$tmp/variant.so" "$root/.carry/old/$name.so"
echo "built .carry/old/$name.so ($compiled objects compiled)"
