# SPDX-License-Identifier: Apache-2.0
# Shared by scripts/install-deps.sh and scripts/install-test-deps.sh: installs the Debian
# packages named in the caller's `packages` array that are not installed yet, or with --list
# prints them one a line (what tests/packaging/check_deps.sh reads) and installs nothing.
apt_install() {  # apt_install WHAT [--list]
  local what=$1
  shift
  if [[ ${1:-} == --list ]]; then
    printf '%s\n' "${packages[@]}"
    return 0
  fi
  if [[ $# -gt 0 ]]; then
    echo "usage: $0 [--list]" >&2
    return 2
  fi
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  echo "$what: installed"
}
