#!/usr/bin/env bash
# Installs what a clean machine lacks for tailwart's tests, each only if
# missing, then starts nothing: tests start their own servers.
# Each area keeps its own step in scripts/setup/NN-*.sh (idempotent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export TAILWART_CACHE="${TAILWART_CACHE:-$HOME/.cache/tailwart}"
mkdir -p "$TAILWART_CACHE"

apt_updated=0
# apt_need PKG... : install Debian packages that are not installed yet
apt_need() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  echo "setup: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
export -f apt_need 2>/dev/null || true

for step in "$here"/setup/*.sh; do
  [ -e "$step" ] || continue
  echo "setup: $(basename "$step")"
  # shellcheck source=/dev/null
  source "$step"
done
echo "setup: done"
