# Mailbox: the real compose loader. Builds the Compose v2 CLI (the plugin behind
# `docker compose`) from its Go module into the tool cache, outside the work tree.
# Run standalone it loads, validates and normalises the compose file
# (`docker-compose config`) without a Docker engine; `inv check` and the tests use it.
# `go install …@version` refuses this module (its go.mod has exclude directives), so
# it is built from the downloaded module (go_module_build).
compose_version=v2.40.3   # keep equal to tailwart.checks.compose_loader.LOADER_VERSION
compose_bin="$TAILWART_CACHE/tools/compose-$compose_version/docker-compose"
if [ ! -x "$compose_bin" ]; then
  echo "setup: building docker compose $compose_version (a few minutes, once)"
  go_module_build github.com/docker/compose/v2 "$compose_version" ./cmd "$compose_bin" \
    "-s -w -X github.com/docker/compose/v2/internal.Version=$compose_version"
fi
"$compose_bin" version --short >/dev/null
