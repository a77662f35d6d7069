# Edge deploy tests: OpenSSH servers in network namespaces (sshd, ssh-keygen, ip),
# pgrep to cut SSH sessions, systemd-analyze to verify the unit (no running systemd
# needed), and a second caddy-l4 build from another caddy pin for the binary-change
# scenario. Both binaries are content-addressed in $TAILWART_CACHE: warm, this is a no-op.
apt_need openssh-server openssh-client iproute2 procps systemd
deploy_root=$(cd "$here/.." && pwd)
(cd "$deploy_root" && python3 - <<'PY'
import dataclasses
import sys

sys.path.insert(0, "src")
from tailwart.edge.build import ensure_caddy, load_pins
from tailwart.paths import cache_dir

out = cache_dir("deploy-test-bin")
pins = load_pins()
# the pinned binary, and the same build from caddy v2.11.8 (caddy-l4 v0.1.2 needs >= v2.11.4)
for p in (pins, dataclasses.replace(pins, caddy="v2.11.8")):
    built = ensure_caddy("linux", "amd64", pins=p, out_dir=out, progress=print)
    print(f"setup: 20-deploy: caddy {p.caddy} {built.action} ({built.sha256[:12]})")
PY
)
