# Mailbox for real (issue 11): Debian's Docker engine (the tests start their own
# dockerd, never the system service), iptables for its FORWARD guard, tcpdump for
# the capture that proves nothing leaves 198.18.0.0/15, debootstrap for the base
# image, and tailscale's containerboot, tailscaled and tailscale built from the Go
# module at the version TS_IMAGE pins, into the tool cache (keyed by version).
# The images themselves are made by the tests (tests/support/mailbox_world.py),
# cached in their dockerd's data root under $TAILWART_CACHE/docker.
docker_root=$(cd "$here/.." && pwd)
# the package's maintainer scripts must not start the system dockerd (it would take
# 172.17.0.0/16): deny service starts for this install only, unless a policy exists
docker_policy_added=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  docker_policy_added=1
fi
apt_need docker.io tini iptables tcpdump debootstrap
if [ "$docker_policy_added" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
command -v dockerd >/dev/null

ts_version=$(cd "$docker_root" && python3 -c 'import sys; sys.path.insert(0, "src")
from tailwart.settings.contract import BY_NAME
print(BY_NAME["TS_IMAGE"].default.rsplit(":", 1)[1])')
ts_dir="$TAILWART_CACHE/tools/tailscale-$ts_version"
for ts_cmd in tailscaled tailscale containerboot; do
  if [ ! -x "$ts_dir/$ts_cmd" ]; then
    echo "setup: building tailscale $ts_version $ts_cmd (several minutes, once)"
    go_module_build tailscale.com "$ts_version" "./cmd/$ts_cmd" "$ts_dir/$ts_cmd" \
      "-s -w -X tailscale.com/version.longStamp=${ts_version#v} -X tailscale.com/version.shortStamp=${ts_version#v}"
  fi
done
"$ts_dir/tailscale" version | head -1

# The images' base: a Debian root filesystem made by debootstrap from the packages apt
# is configured with (the mirror is apt's own), as a tarball the tests `docker import`.
# Keyed by suite and package list: change either and a new tarball is made.
base_suite=bookworm
base_packages=iptables,iproute2,busybox,netcat-openbsd,curl,ca-certificates,openssl,python3,python3-aiosmtpd
base_key=$(printf '%s %s minbase' "$base_suite" "$base_packages" | sha256sum | cut -c1-16)
base_tar="$TAILWART_CACHE/images/debian-$base_suite-$base_key.tar"
if [ ! -s "$base_tar" ]; then
  base_mirror=$(apt-get indextargets --format '$(SITE)' "Release: $base_suite" 'Identifier: Packages' | sort -u | head -1)
  [ -n "$base_mirror" ] || { echo "setup: 55-docker: apt has no $base_suite source for debootstrap" >&2; exit 1; }
  mkdir -p "$TAILWART_CACHE/images"
  base_root=$(mktemp -d "$TAILWART_CACHE/images/rootfs.XXXXXX")
  echo "setup: debootstrap $base_suite minbase for the test images (a few minutes, once)"
  mkdir -p "$TAILWART_CACHE/logs"
  debootstrap --variant=minbase --include="$base_packages" "$base_suite" "$base_root" "$base_mirror" \
    >"$TAILWART_CACHE/logs/debootstrap.log" 2>&1 \
    || { tail -30 "$TAILWART_CACHE/logs/debootstrap.log" >&2; rm -rf "$base_root"; exit 1; }
  # the sidecar's health check runs `wget` (busybox's, as in the official Alpine-based image)
  # and `nc -z` (Debian's busybox nc has no -z: netcat-openbsd provides it); the Stalwart
  # slot's health check runs curl, as the v0.16 image's own HEALTHCHECK does
  ln -sf /bin/busybox "$base_root/usr/local/bin/wget"
  rm -rf "$base_root"/var/cache/apt/archives/*.deb "$base_root"/var/lib/apt/lists/*
  tar --numeric-owner -C "$base_root" -cf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  rm -rf "$base_root"
  # one base at a time: the tests import the newest
  find "$TAILWART_CACHE/images" -maxdepth 1 -name "debian-$base_suite-*.tar" \
    ! -name "$(basename "$base_tar")" -delete
fi
