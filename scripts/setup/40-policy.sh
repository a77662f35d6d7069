# Tailnet policy: a real headscale (v0.29.x) for the `inv acl --headscale` test,
# built once from its Go module into the tool cache, outside the work tree.
# `go install …@version` stops at the module proxy's version-list lookup here
# (403 on @v/list), so it is built inside a writable copy of the downloaded
# module, against the module's own go.mod and go.sum.
headscale_version=v0.29.2   # keep equal to tests/integration/test_acl_headscale.py
headscale_bin="$TAILWART_CACHE/tools/headscale-$headscale_version/headscale"
if [ ! -x "$headscale_bin" ]; then
  export PATH="/usr/local/go/bin:$PATH"
  headscale_src="$TAILWART_CACHE/src/headscale-$headscale_version"
  if [ ! -f "$headscale_src/go.mod" ]; then
    headscale_mod=$(cd /tmp && go mod download -json "github.com/juanfont/headscale@$headscale_version" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$headscale_src"
    mkdir -p "$(dirname "$headscale_src")"
    cp -r "$headscale_mod" "$headscale_src"
    chmod -R u+w "$headscale_src"
  fi
  mkdir -p "$(dirname "$headscale_bin")" "$TAILWART_CACHE/logs"
  echo "setup: building headscale $headscale_version (several minutes, once; log: $TAILWART_CACHE/logs/headscale.log)"
  (cd "$headscale_src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
    -ldflags "-s -w" \
    -o "$headscale_bin.tmp" ./cmd/headscale) >"$TAILWART_CACHE/logs/headscale.log" 2>&1 \
    || { tail -30 "$TAILWART_CACHE/logs/headscale.log" >&2; exit 1; }
  mv "$headscale_bin.tmp" "$headscale_bin"
fi
"$headscale_bin" version >/dev/null
