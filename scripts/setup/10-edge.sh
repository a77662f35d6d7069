# Edge: Go (checked by 00-base), HAProxy for the edge benchmark, and the caddy-l4
# build itself. `inv build-caddy` is content-addressed ($TAILWART_CACHE/caddy/):
# cold it builds and verifies (a few minutes), warm it is a no-op well under a second.
apt_need haproxy ca-certificates
edge_root=$(cd "$here/.." && pwd)
edge_go_bin=/usr/local/go/bin
case ":$PATH:" in *":$edge_go_bin:"*) ;; *) [ -x "$edge_go_bin/go" ] && export PATH="$edge_go_bin:$PATH" ;; esac
command -v go >/dev/null || { echo "setup: 10-edge: Go >= 1.25.1 is required (https://go.dev/dl)" >&2; exit 1; }
(cd "$edge_root" && python3 -m invoke build-caddy)
