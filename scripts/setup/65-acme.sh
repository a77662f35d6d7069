# ACME: Pebble (Let's Encrypt's ACME test server) and its challenge test server, built
# from their Go module into the tool cache, outside the work tree. Tests start them with
# their own certificates and DNS server; nothing here contacts a real CA.
# Keep pebble_version equal to tests' testkit.PEBBLE_VERSION.
pebble_version=v2.10.3
pebble_dir="$TAILWART_CACHE/tools/pebble-$pebble_version"
if [ ! -x "$pebble_dir/pebble" ]; then
  echo "setup: building pebble $pebble_version (a minute, once)"
  go_module_build github.com/letsencrypt/pebble/v2 "$pebble_version" ./cmd/pebble "$pebble_dir/pebble"
fi
if [ ! -x "$pebble_dir/pebble-challtestsrv" ]; then
  go_module_build github.com/letsencrypt/pebble/v2 "$pebble_version" ./cmd/pebble-challtestsrv \
    "$pebble_dir/pebble-challtestsrv"
fi

test -x "$pebble_dir/pebble"
