# Tailnet policy: a real headscale (v0.29.x) for the `inv acl --headscale` test,
# built once from its Go module into the tool cache, outside the work tree.
# `go install …@version` stops at the module proxy's version-list lookup here
# (403 on @v/list), so it is built from the downloaded module (go_module_build).
headscale_version=v0.29.2   # keep equal to tests/integration/test_acl_headscale.py
headscale_bin="$TAILWART_CACHE/tools/headscale-$headscale_version/headscale"
if [ ! -x "$headscale_bin" ]; then
  echo "setup: building headscale $headscale_version (several minutes, once)"
  go_module_build github.com/juanfont/headscale "$headscale_version" ./cmd/headscale "$headscale_bin"
fi
"$headscale_bin" version >/dev/null
