# Mailbox: the real compose loader. Builds the Compose v2 CLI (the plugin behind
# `docker compose`) from its Go module into the tool cache, outside the work tree.
# Run standalone it loads, validates and normalises the compose file
# (`docker-compose config`) without a Docker engine; `inv check` and the tests use it.
# `go install …@version` refuses this module (its go.mod has exclude directives), so
# it is built inside a writable copy of the downloaded module, against its go.sum.
compose_version=v2.40.3   # keep equal to tailwart.mailbox.loader.LOADER_VERSION
compose_bin="$TAILWART_CACHE/tools/compose-$compose_version/docker-compose"
if [ ! -x "$compose_bin" ]; then
  export PATH="/usr/local/go/bin:$PATH"
  compose_src="$TAILWART_CACHE/src/compose-$compose_version"
  if [ ! -f "$compose_src/go.mod" ]; then
    compose_mod=$(cd /tmp && go mod download -json "github.com/docker/compose/v2@$compose_version" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$compose_src"
    mkdir -p "$(dirname "$compose_src")"
    cp -r "$compose_mod" "$compose_src"
    chmod -R u+w "$compose_src"
  fi
  mkdir -p "$(dirname "$compose_bin")"
  echo "setup: building docker compose $compose_version (a few minutes, once)"
  (cd "$compose_src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$compose_version" \
    -o "$compose_bin.tmp" ./cmd)
  mv "$compose_bin.tmp" "$compose_bin"
fi
"$compose_bin" version --short >/dev/null
