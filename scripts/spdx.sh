#!/usr/bin/env bash
# Puts `SPDX-License-Identifier: Apache-2.0` at the top of every tracked source file that
# lacks it, in the file's comment syntax (after a shebang, and after a Python coding line).
# Idempotent: a file with the line in its first three lines is left alone.
#   scripts/spdx.sh           add the line where missing, print the files changed
#   scripts/spdx.sh --check   change nothing; list the files lacking it, exit 1 if any
# Source files: C/C++/CUDA, JavaScript/TypeScript, CMake, shell, Python, YAML, TOML, Makefiles,
# Dockerfiles, linker maps, pkg-config templates, and any executable script with a shebang;
# not third_party/ or node_modules/. JSON and Markdown have no comments and are left alone.
set -euo pipefail
mode=${1:-add}
case $mode in add | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
id='SPDX-License-Identifier: Apache-2.0'

# Tracked files, each with its comment style: slash (//), hash (#), block (/* */).
list_sources() {
  git ls-files -s -z | while IFS= read -r -d '' entry; do
    local file=${entry#*$'\t'} fmode=${entry%% *}
    [[ -f $file && ! -L $file ]] || continue
    case $file in
      third_party/* | */third_party/* | node_modules/* | */node_modules/*) ;;  # others' code, others' licenses
      *.c | *.cc | *.cpp | *.cxx | *.h | *.hh | *.hpp | *.cu | *.cuh | *.inc | *.js | *.mjs | *.cjs | *.ts)
        echo "slash $file" ;;
      *.map) echo "block $file" ;;
      CMakeLists.txt | */CMakeLists.txt | *.cmake | *.cmake.in | *.pc.in | *.sh | *.bash | *.py | *.pyi | *.yaml | *.yml | \
        *.toml | Dockerfile | */Dockerfile | Makefile | */Makefile | *.mk)
        echo "hash $file" ;;
      *)
        if [[ $fmode == 100755 ]] && [[ $(head -c 2 "$file") == '#!' ]]; then echo "hash $file"; fi ;;
    esac
  done
}

declare -A style_of=()
while read -r style file; do style_of[$file]=$style; done < <(list_sources)
# One pass over the first three lines of every file (head -v names each, even an empty one).
missing=()
if ((${#style_of[@]})); then
  while IFS= read -r file; do
    missing+=("${style_of[$file]} $file")
  done < <(printf '%s\0' "${!style_of[@]}" | sort -z | xargs -0 head -v -n 3 -- | awk -v id="$id" '
    /^==> .* <==$/ { if (name != "" && !ok) print name; name = substr($0, 5, length($0) - 8); ok = 0; next }
    index($0, id) { ok = 1 }
    END { if (name != "" && !ok) print name }')
fi

if [[ $mode == --check ]]; then
  if ! grep -q 'Apache License' LICENSE 2>/dev/null || ! grep -q 'Version 2.0, January 2004' LICENSE; then
    echo "LICENSE: expected the Apache License 2.0 text that the SPDX lines name" >&2
    exit 1
  fi
  if ((${#missing[@]})); then
    echo "files without '$id' in their first three lines (scripts/spdx.sh adds it):" >&2
    printf '  %s\n' "${missing[@]#* }" >&2
    exit 1
  fi
  exit 0
fi

# One perl per comment style rewrites its files in place (perl -i keeps each file's mode).
for style in slash block hash; do
  case $style in
    slash) line="// $id" ;;
    block) line="/* $id */" ;;
    hash) line="# $id" ;;
  esac
  files=() edit=()
  for entry in "${missing[@]}"; do [[ ${entry%% *} == "$style" ]] && files+=("${entry#* }"); done
  ((${#files[@]})) || continue
  for f in "${files[@]}"; do
    if [[ -s $f ]]; then edit+=("$f"); else printf '%s\n' "$line" >"$f"; fi  # perl -p skips empty files
  done
  # The line goes first, or after a shebang and then after a Python encoding declaration
  # (both must stay in lines 1-2).
  ((${#edit[@]})) && printf '%s\0' "${edit[@]}" | SPDX_LINE=$line xargs -0 perl -i -pe '
    if (!$done) {
      if ($. == 1 && /^#!/) { $after = 1 }
      elsif ($. == 2 && $after == 1 && /^#.*coding[:=]/) { $after = 2 }
      else { $_ = "$ENV{SPDX_LINE}\n$_"; $done = 1 }
    }
    if (eof) {
      if (!$done) { $_ .= "\n" unless /\n\z/; $_ .= "$ENV{SPDX_LINE}\n" }
      ($done, $after) = (0, 0);
      close ARGV;
    }'
  printf '%s\n' "${files[@]}"
done
