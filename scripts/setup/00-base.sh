# Base: python tooling for nox and the tasks, Go for caddy-l4, iproute2 and
# OpenSSH for namespace hosts, faketime for nox -s later.
apt_need iproute2 openssh-server openssh-client git faketime
python3 -m pip --version >/dev/null
python3 -c "import nox" 2>/dev/null || python3 -m pip install -q "nox>=2024.4"
python3 -c "import invoke, fabric, dotenv, jinja2, yaml, json5" 2>/dev/null \
  || python3 -m pip install -q -e "$(cd "$here/.." && pwd)"
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "setup: Go >= 1.25.1 is required (https://go.dev/dl)" >&2; exit 1; }
