#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the .deb with cpack, checks its control fields and its file list, unpacks it into a
# scratch root (dpkg -x, as a user without root would) and runs `moereg plugins list` and
# `moereg demo` from there: the binary must find the packaged plugins and backends relative
# to itself. Also checks the man page, the bash completion and the SDK's pkg-config file
# against the unpacked binary. Exit 77 (ctest: skipped) only when dpkg-deb is absent.
# Usage: deb_package_test.sh BUILD_DIR SOURCE_DIR LIBDIR
set -euo pipefail
build=$(cd "${1:?usage: deb_package_test.sh BUILD_DIR SOURCE_DIR LIBDIR}" && pwd)
src=$(cd "${2:?usage: deb_package_test.sh BUILD_DIR SOURCE_DIR LIBDIR}" && pwd)
libdir=${3:?usage: deb_package_test.sh BUILD_DIR SOURCE_DIR LIBDIR}
if ! command -v dpkg-deb >/dev/null; then
  echo "dpkg-deb not found: the .deb cannot be built or unpacked here (skipped)"
  exit 77
fi
work=$build/packaging-test
rm -rf "$work" && mkdir -p "$work"
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# 1. The package.
if ! (cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1); then
  cat "$work/cpack.log" >&2
  echo "FAIL: cpack -G DEB failed" >&2
  exit 1
fi
debs=("$work"/out/*.deb)
if ((${#debs[@]} != 1)) || [[ ! -f ${debs[0]} ]]; then
  echo "FAIL: expected one .deb in $work/out, found: ${debs[*]}" >&2
  exit 1
fi
deb=${debs[0]}
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
arch=$(dpkg --print-architecture)
[[ $(basename "$deb") == "moereg_${version}_${arch}.deb" ]] || fail "package file is $(basename "$deb"), expected moereg_${version}_${arch}.deb"

# 2. Control fields.
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == moereg ]] || fail "Package: '$(field Package)', expected moereg"
[[ $(field Version) == "$version" ]] || fail "Version: '$(field Version)', expected $version"
[[ $(field Architecture) == "$arch" ]] || fail "Architecture: '$(field Architecture)', expected $arch"
[[ $(field Maintainer) == *'<'*'@'*'>' ]] || fail "Maintainer: '$(field Maintainer)', expected 'Name <address>'"
[[ -n $(field Description) ]] || fail "Description is empty"
depends=$(field Depends)
[[ -n $depends ]] || fail "Depends is empty, expected the packages of the libraries moereg links"

# 3. The file list.
listing=$(dpkg-deb -c "$deb")
paths=$(awk '{print $6}' <<<"$listing" | sed 's|^\./|/|; s|/$||')
expect=(/usr/bin/moereg "/usr/$libdir/moereg/backends/libmoereg_backend_cpu.so"
  /usr/share/man/man1/moereg.1 /usr/share/bash-completion/completions/moereg /usr/share/pkgconfig/moereg-sdk.pc
  "/usr/$libdir/pkgconfig/moereg.pc"
  "/usr/$libdir/cmake/moereg/moeregConfig.cmake" "/usr/$libdir/cmake/moereg/moeregConfigVersion.cmake"
  "/usr/$libdir/cmake/moereg/moeregTargets.cmake" /usr/share/moereg/bench/moe/torch_reference.py
  /usr/share/doc/moereg/README.md /usr/share/doc/moereg/LICENSE /usr/share/doc/moereg/copyright)
for d in "$src"/plugins/*/; do
  [[ -f $d/plugin.yaml ]] || continue
  name=$(basename "$d")
  expect+=("/usr/$libdir/moereg/plugins/$name/plugin.yaml")
  [[ -f $d/hooks.cpp ]] && expect+=("/usr/$libdir/moereg/plugins/$name/libmoereg_$name.so")
done
for f in "$src"/core/include/moereg/abi/*.h; do expect+=("/usr/include/moereg/abi/$(basename "$f")"); done
for f in "$src"/app/include/moereg/app/*.h; do expect+=("/usr/include/moereg/app/$(basename "$f")"); done
for f in "$src"/docs/*.md; do expect+=("/usr/share/doc/moereg/$(basename "$f")"); done
for f in "$src"/configs/*.yaml; do expect+=("/usr/share/moereg/configs/$(basename "$f")"); done
for p in "${expect[@]}"; do
  grep -qxF "$p" <<<"$paths" || fail "dpkg -c lists no $p"
done
grep -qE "^/usr/$libdir/libmoereg\.so\.[0-9]+\.[0-9]+\.[0-9]+$" <<<"$paths" || fail "dpkg -c lists no /usr/$libdir/libmoereg.so.<version>"
if grep -E 'abi_|abitest|gtest|moereg_tests|fuzz' <<<"$paths"; then fail "test files in the package (above)"; fi
if awk '$1 ~ /^d/ && (substr($1, 6, 1) == "w" || substr($1, 9, 1) == "w")' <<<"$listing" | grep .; then
  fail "group- or world-writable directories in the package (above): the registry refuses plugins there"
fi

# 4. Unpacked into a scratch root, run from there.
root=$work/root
dpkg-deb -x "$deb" "$root"
exe=$root/usr/bin/moereg
run() { env -u MOEREG_PLUGIN_PATH "$@"; }
if ! list=$(run "$exe" plugins list 2>&1); then
  fail "moereg plugins list from the unpacked package failed:"$'\n'"$list"
fi
grep -qF "$root/usr/$libdir/moereg/plugins" <<<"$list" || fail "plugins list does not search $root/usr/$libdir/moereg/plugins:"$'\n'"$list"
for d in "$src"/plugins/*/; do
  [[ -f $d/plugin.yaml ]] || continue
  name=$(basename "$d")
  grep -qE "^$name +family +[^ ]+ .*(available|loaded)" <<<"$list" || fail "plugins list shows no usable family '$name':"$'\n'"$list"
done
grep -qE "^cpu +backend +.*(available|loaded)" <<<"$list" || fail "plugins list shows no usable cpu backend:"$'\n'"$list"
# (a backend not built, e.g. cuda without nvcc, is listed as refused with its .unavailable file;
# a built one whose probe finds no device here, e.g. cuda on a machine without a GPU, is refused
# by its probe: neither is a packaging fault)
probe_refusals=$(grep -E "probe says it cannot run here" <<<"$list" | grep -oE '/[^ :]+\.so' || true)
if grep -E '^[a-z0-9_]+ .* refused ' <<<"$list" | grep -v '\.unavailable$' | grep -vF "${probe_refusals:-/nonexistent/}"; then
  fail "plugins list refuses a packaged plugin:"$'\n'"$list"
fi
if grep -qF "$build/lib/moereg" <<<"$list"; then fail "plugins list reads the build tree's $build/lib/moereg:"$'\n'"$list"; fi
# Help texts name the docs where this unpacked package has them (they named the build's
# prefix, /usr/local, while the package puts them under /usr, here under $root/usr).
[[ -f $root/usr/share/doc/moereg/gguf.md ]] || fail "the package has no /usr/share/doc/moereg/gguf.md"
help=$(run "$exe" convert --help 2>&1) || fail "moereg convert --help failed:"$'\n'"$help"
grep -qF "$root/usr/share/doc/moereg/gguf.md when installed" <<<"$help" ||
  fail "convert --help does not name the unpacked docs $root/usr/share/doc/moereg/gguf.md:"$'\n'"$help"
mkdir -p "$work/demo"
if ! demo=$(cd "$work/demo" && run "$exe" demo --dir "$work/demo/out" 2>&1); then
  fail "moereg demo from the unpacked package failed:"$'\n'"$demo"
fi

# Depends holds the Debian package of every shared library the binaries link directly (their
# DT_NEEDED entries; or a virtual package that one provides, as libspdlog1.10 provides
# libspdlog1.10-fmt9). What those libraries link in turn is their packages' business: libmpi
# (the MPI front end) brings hwloc, libevent and zlib, which libopenmpi3 depends on.
depends_names=$(tr ',|' '\n\n' <<<"$depends" | sed 's/^ *//; s/[ (].*//' | sed '/^$/d')
while IFS= read -r elf; do
  needed=$(objdump -p "$elf" | awk '$1 == "NEEDED" {print $2}')
  # (a plugin library of hooks may need nothing; the binary needs libc at least)
  if [[ -z $needed && $elf == "$root/usr/bin/"* ]]; then fail "objdump -p found no NEEDED entries in ${elf#"$root"}"; fi
  while read -r lib _ path _; do
    [[ $path == /* ]] || continue
    grep -qxF "$lib" <<<"$needed" || continue
    owner=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1) || true
    [[ -n $owner ]] || owner=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n1 | cut -d: -f1) || true
    [[ -n $owner ]] || { fail "${elf#"$root"} links $lib ($path), which no Debian package holds"; continue; }
    names=$(dpkg-query -W -f='${Package}, ${Provides}' "$owner" | tr ',' '\n' | sed 's/^ *//; s/[ (].*//' | sed '/^$/d')
    grep -qxF -f <(printf '%s\n' "$names") <<<"$depends_names" ||
      fail "Depends lacks $owner (for $lib, linked by ${elf#"$root"}): $depends"
  done < <(ldd "$elf" | grep '=>')
done < <(find "$root/usr/bin" -type f; find "$root" -type f -name '*.so')

# 5. Man page: renders, and has a section for every command the binary lists.
man=$root/usr/share/man/man1/moereg.1
commands=$("$exe" --help | sed -n 's/^  \([a-z][a-z0-9_-]*\)  .*/\1/p')
[[ -n $commands ]] || fail "no commands read from moereg --help"
for c in $commands; do
  grep -qF ".SS \"moereg $c\"" "$man" || fail "the man page has no section for 'moereg $c'"
done
if command -v groff >/dev/null; then
  warnings=$(groff -man -Tutf8 -ww -z "$man" 2>&1)
  [[ -z $warnings ]] || fail "groff warns on the man page: $warnings"
fi

# 6. Bash completion: the commands, subcommands and each command's options.
complete_words() {  # complete_words WORD... : what the completion offers for the last word
  bash -c 'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _moereg; printf "%s\n" "${COMPREPLY[@]}"' \
    "$root/usr/share/bash-completion/completions/moereg" moereg "$@"
}
options_in_help() { "$exe" "$@" --help | grep -oE '^  (-[A-Za-z] \[ )?--[a-z0-9][a-z0-9-]*' | grep -oE -- '--[a-z0-9-]+$'; }
for c in $commands; do
  grep -qx "$c" <<<"$(complete_words "")" || fail "completion of 'moereg ' lacks $c"
  subs=$(bash -c 'source "$0"; _moereg_spec "$1"; echo "$subs"' "$root/usr/share/bash-completion/completions/moereg" "$c")
  for words in "$c" $(for s in $subs; do echo "$c/$s"; done); do
    offered=$(complete_words ${words/\// } --)
    for o in $(options_in_help ${words/\// }); do
      grep -qx -- "$o" <<<"$offered" || fail "completion of 'moereg ${words/\// } --' lacks $o"
    done
  done
done
[[ $(complete_words moe "" | sort | tr '\n' ' ') == "bench run " ]] || fail "completion of 'moereg moe ' is '$(complete_words moe "" | tr '\n' ' ')', expected bench run"
grep -qx -- --layer <<<"$(complete_words moe run --la)" || fail "completion of 'moereg moe run --la' lacks --layer"
grep -qx -- --shard-size <<<"$(complete_words convert ckpt/ out/ --sh)" || fail "completion of 'moereg convert ckpt/ out/ --sh' lacks --shard-size"

# 7. pkg-config: the SDK headers compile with its flags.
if command -v pkg-config >/dev/null; then
  export PKG_CONFIG_PATH=$root/usr/share/pkgconfig
  [[ $(pkg-config --modversion moereg-sdk) == "$version" ]] || fail "pkg-config --modversion moereg-sdk: '$(pkg-config --modversion moereg-sdk)', expected $version"
  [[ -d $(pkg-config --variable=plugindir moereg-sdk) ]] || fail "pkg-config plugindir $(pkg-config --variable=plugindir moereg-sdk) is not a directory"
  printf '#include <moereg/abi/moereg_backend.h>\n#include <moereg/abi/moereg_hooks.h>\nint main(void) { return MOEREG_PLUGIN_API_VERSION == 0; }\n' >"$work/sdk.c"
  # shellcheck disable=SC2046  # the flags are words
  cc $(pkg-config --cflags moereg-sdk) -fsyntax-only "$work/sdk.c" 2>"$work/sdk.log" || fail "the SDK headers do not compile with pkg-config --cflags moereg-sdk: $(cat "$work/sdk.log")"
  # libmoereg through its own .pc: a program built and linked with its flags runs from the
  # unpacked root (no CMake).
  export PKG_CONFIG_PATH=$root/usr/$libdir/pkgconfig:$PKG_CONFIG_PATH
  [[ $(pkg-config --modversion moereg) == "$version" ]] || fail "pkg-config --modversion moereg: '$(pkg-config --modversion moereg)', expected $version"
  printf '#include <moereg/app/moereg.h>\n#include <cstdio>\nint main() {\n  auto r = moereg::app::open_model({});\n  std::printf("%%s\\n", r.ok() ? "ok" : r.error().message.c_str());\n  return r.ok() ? 1 : 0;\n}\n' >"$work/app.cpp"
  # shellcheck disable=SC2046  # the flags are words
  c++ -std=c++20 "$work/app.cpp" $(pkg-config --cflags --libs moereg) -Wl,-rpath,"$(pkg-config --variable=libdir moereg)" \
    -o "$work/app" 2>"$work/app.log" || fail "a program does not build with pkg-config --cflags --libs moereg: $(cat "$work/app.log")"
  [[ -x $work/app ]] && { "$work/app" | grep -q "no checkpoint path given" || fail "the program linked through moereg.pc did not run: $("$work/app" 2>&1)"; }
else
  echo "pkg-config not found: the .pc files are not checked"
fi

if ((failures)); then
  echo "$failures check(s) failed; the package and the unpacked root are in $work" >&2
  exit 1
fi
echo "$(basename "$deb"): $(wc -l <<<"$paths") entries; Depends: $depends; runs from $root"
rm -rf "$work"
