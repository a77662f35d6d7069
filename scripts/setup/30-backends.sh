# Backends and doctor tests: Debian's PostgreSQL 15, Redis and Knot DNS (the tests
# start their own instances on free loopback ports), and the real Garage binary,
# built once with cargo install into the cache (keyed by version). Redis Sentinel
# needs no package of its own: the tests run `redis-server --sentinel` (Debian's
# redis-sentinel package would only add a system service on :26379).
apt_need postgresql-15 redis-server knot build-essential pkg-config

garage_version=2.1.0
garage_root="$TAILWART_CACHE/garage-$garage_version-debug"
if [ ! -x "$garage_root/bin/garage" ]; then
  cargo_bin=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
  [ -x "$cargo_bin" ] || { echo "setup: cargo (Rust >= 1.82) is required to build garage (https://rustup.rs)" >&2; exit 1; }
  mkdir -p "$TAILWART_CACHE/logs"
  echo "setup: building garage $garage_version (debug, about 10 minutes on 2 cores; log: $TAILWART_CACHE/logs/garage.log)"
  "$cargo_bin" install garage --version "$garage_version" --locked --debug \
    --root "$garage_root" >"$TAILWART_CACHE/logs/garage.log" 2>&1 \
    || { tail -30 "$TAILWART_CACHE/logs/garage.log" >&2; exit 1; }
fi
"$garage_root/bin/garage" --version
