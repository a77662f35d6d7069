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

# go_module_build MODULE VERSION PACKAGE OUTPUT [LDFLAGS] : build a Go command from
# a module as the module proxy serves it, against the module's own go.mod/go.sum,
# inside a writable copy in the cache. For modules `go install …@version` refuses
# (exclude directives in go.mod, or a proxy that refuses the version-list lookup).
# GOWORK=off: a go.work shipped in a module's zip names directories the zip leaves out
# (Prometheus's does); the module's own go.mod is what is built.
go_module_build() {
  local module=$1 version=$2 package=$3 output=$4 ldflags=${5:-"-s -w"}
  local src="$TAILWART_CACHE/src/${module//\//_}@$version" dir
  export PATH="/usr/local/go/bin:$PATH"
  if [ ! -f "$src/go.mod" ]; then
    dir=$(cd /tmp && go mod download -json "$module@$version" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$src"
    mkdir -p "$(dirname "$src")"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
  fi
  mkdir -p "$(dirname "$output")" "$TAILWART_CACHE/logs"
  (cd "$src" && GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$ldflags" \
    -o "$output.tmp" "$package") >"$TAILWART_CACHE/logs/$(basename "$output").log" 2>&1 \
    || { tail -30 "$TAILWART_CACHE/logs/$(basename "$output").log" >&2; return 1; }
  mv "$output.tmp" "$output"
}

for step in "$here"/setup/*.sh; do
  [ -e "$step" ] || continue
  echo "setup: $(basename "$step")"
  # shellcheck source=/dev/null
  source "$step"
done
echo "setup: done"
