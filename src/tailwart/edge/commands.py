"""An edge host's layout and the exact shell commands run there: pure, built from data.

Layout under ``root`` (default /opt/tailwart-edge)::

    releases/<id>/caddy, caddy.json, meta, activated
    releases/.incoming-<id>/   an upload in progress; never a release until renamed
    current -> releases/<id>   switched with an atomic rename
    lock/info                  atomic mkdir; who, when, message, token
    audit.log                  one line per deploy, rollback or unlock
    drained                    mailbox nodes sent no new sessions (inv drain, undrain)
    run/caddy.pid, log/caddy.log, state/   supervised mode only

Nothing here does I/O: unit tests assert the commands verbatim; ``remote.Remote`` runs them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..errors import OperationError
from .drain import DRAINED_FILE
from .drain import MAX_LINES as MAX_DRAINED_LINES
from .limits import NOFILE as NOFILE  # open files the edge may hold: the unit's LimitNOFILE
from .limits import HostLimits
from .plan import MIGRATE_SYSCTL, SYSCTL_DROPIN, Action, RemoteRelease, RemoteState
from .render import RUNTIME_ENV

DEFAULT_ROOT = "/opt/tailwart-edge"
SERVICE = "tailwart-edge"
SERVICE_USER = "tailwart-edge"
UNIT_PATH = f"/etc/systemd/system/{SERVICE}.service"
CONFIG_MARK = "--- current caddy.json ---"
MIGRATE_PROC = "/proc/sys/" + MIGRATE_SYSCTL.replace(".", "/")
#: the kernel's limits on held sessions, as read by the probe (/proc/sys paths)
LIMIT_SYSCTLS = {
    "net/core/somaxconn": "somaxconn",
    "net/ipv4/ip_local_port_range": "port_range",
    "fs/file-max": "file_max",
    "fs/nr_open": "nr_open",
}
ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


q = shlex.quote


@dataclass(frozen=True)
class Layout:
    """Paths of one host's edge installation."""

    root: str = DEFAULT_ROOT
    #: the admin socket the RUNNING config listens on (from the rendered caddy.json)
    admin_socket: str = "/run/tailwart-edge/admin.sock"

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    def release(self, rid: str) -> str:
        return f"{self.root}/releases/{rid}"

    def incoming(self, rid: str) -> str:
        return f"{self.root}/releases/.incoming-{rid}"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def lock(self) -> str:
        return f"{self.root}/lock"

    @property
    def audit(self) -> str:
        return f"{self.root}/audit.log"

    @property
    def drained(self) -> str:
        return f"{self.root}/{DRAINED_FILE}"

    @property
    def pidfile(self) -> str:
        return f"{self.root}/run/caddy.pid"

    @property
    def logfile(self) -> str:
        return f"{self.root}/log/caddy.log"

    @property
    def caddy_env(self) -> str:
        """Environment for caddy commands run over SSH: its state stays under root; the Go
        runtime settings of the systemd unit (RUNTIME_ENV), so both modes run alike."""
        runtime = "".join(f" {name}={q(value)}" for name, value in RUNTIME_ENV.items())
        return (
            f"env XDG_CONFIG_HOME={q(self.root + '/state/config')} "
            f"XDG_DATA_HOME={q(self.root + '/state/data')}{runtime}"
        )


def probe_command(layout: Layout) -> str:
    """One round trip reporting OS/arch, init system, releases, current, lock, running pid,
    the running caddy's open-files limit and the kernel's limits on held sessions."""
    r = q(layout.root)
    return (
        f"R={r}; "
        'echo "os $(uname -s) $(uname -m)"; '
        "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; "
        'then echo "systemd yes"; else echo "systemd no"; fi; '
        f'[ -f {UNIT_PATH} ] && echo "unit $(sha256sum < {UNIT_PATH} | cut -d" " -f1)"; '
        'echo "current $(readlink "$R/current" 2>/dev/null)"; '
        'for d in "$R"/releases/*/; do [ -f "$d/meta" ] || continue; '
        'echo "release $(basename "$d") $(tr "\\n" " " < "$d/meta")'
        'activated=$(cat "$d/activated" 2>/dev/null || echo 0)"; done; '
        '[ -d "$R/lock" ] && echo "lock $(tr "\\n" " " < "$R/lock/info" 2>/dev/null)"; '
        'pid=$(cat "$R/run/caddy.pid" 2>/dev/null); '
        "if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then "
        f"spid=$(systemctl show -p MainPID --value {SERVICE} 2>/dev/null); "
        '[ "${spid:-0}" != 0 ] && pid=$spid; fi; '
        'if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; '
        'then echo "running $pid $(readlink /proc/$pid/exe)"; '
        """echo "nofile $(grep -m1 '^Max open files' /proc/$pid/limits 2>/dev/null)"; fi; """
        f"for k in {' '.join(LIMIT_SYSCTLS)}; do "
        'echo "sysctl $k $(cat /proc/sys/$k 2>/dev/null)"; done; '
        f'echo "tcp_migrate_req $(cat {MIGRATE_PROC} 2>/dev/null || echo missing)"; '
        f'[ -f {SYSCTL_DROPIN} ] && echo "sysctl_dropin yes"; '
        f'[ -f "$R/{DRAINED_FILE}" ] && head -n {MAX_DRAINED_LINES} "$R/{DRAINED_FILE}" '
        "| tr -d '\\r' | cut -c1-300 | sed 's/^/drained /'; "
        f'echo "{CONFIG_MARK}"; cat "$R/current/caddy.json" 2>/dev/null; true'
    )


class GarbledProbe(OperationError):
    """A host's probe answer is not what probe_command prints (exit 1)."""


def _garbled(host: str, line: str, what: str) -> GarbledProbe:
    shown = repr(line[:120]) + ("…" if len(line) > 120 else "")
    return GarbledProbe(
        f"{host or 'the host'}: the probe's answer is garbled: {shown}: {what}; nothing was "
        "changed → look at the host (its shell's startup files must print nothing)"
    )


def parse_probe(text: str, layout: Layout, host: str = "") -> RemoteState:
    """The RemoteState reported by ``probe_command``; GarbledProbe (naming ``host``) when a
    line that carries a number does not."""
    head, _, config = text.partition(CONFIG_MARK + "\n")
    goos = goarch = ""
    systemd = False
    unit_sha = ""
    current: str | None = None
    releases: list[RemoteRelease] = []
    lock: str | None = None
    pid: int | None = None
    running_release: str | None = None
    migrate = ""
    dropin = False
    limits: dict[str, str] = {}
    drained: list[str] = []
    for line in head.splitlines():
        word, _, rest = line.partition(" ")
        if word == "os":
            os_name, _, machine = rest.partition(" ")
            goos, goarch = os_name.lower(), ARCHES.get(machine.strip(), machine.strip())
        elif word == "systemd":
            systemd = rest.strip() == "yes"
        elif word == "unit":
            unit_sha = rest.strip()
        elif word == "current":
            target = rest.strip()
            current = target.rsplit("/", 1)[-1] if target else None
        elif word == "release":
            rid, _, fields = rest.partition(" ")
            meta = dict(f.split("=", 1) for f in fields.split() if "=" in f)
            try:
                activated = float(meta.get("activated", "0") or 0)
            except ValueError:
                raise _garbled(host, line, "its activation time is not a number") from None
            releases.append(
                RemoteRelease(
                    id=rid,
                    binary_sha256=meta.get("binary_sha256", ""),
                    config_sha256=meta.get("config_sha256", ""),
                    activated=activated,
                    version=meta.get("version", ""),
                )
            )
        elif word == "lock":
            lock = rest.strip() or "(no info)"
        elif word == "tcp_migrate_req":
            migrate = rest.strip() or "missing"
        elif word == "sysctl_dropin":
            dropin = True
        elif word == "drained":
            drained.append(rest)
        elif word == "nofile":
            limits["nofile"] = rest.strip()
        elif word == "sysctl":
            path, _, value = rest.partition(" ")
            if path in LIMIT_SYSCTLS:
                limits[LIMIT_SYSCTLS[path]] = value.strip()
        elif word == "running":
            spid, _, exe = rest.partition(" ")
            if not spid.isdigit() or len(spid) > 10:
                raise _garbled(host, line, "the running process id is not a number")
            pid = int(spid)
            prefix = layout.releases + "/"
            exe = exe.strip().removesuffix(" (deleted)")
            if exe.startswith(prefix) and exe.endswith("/caddy"):
                running_release = exe[len(prefix) : -len("/caddy")]
    return RemoteState(
        goos=goos,
        goarch=goarch,
        systemd=systemd,
        releases=tuple(releases),
        current=current,
        current_config=config if current else "",
        running_pid=pid,
        running_release=running_release,
        unit_installed=bool(unit_sha),
        unit_sha256=unit_sha,
        lock=lock,
        tcp_migrate_req=migrate,
        sysctl_dropin=dropin,
        limits=HostLimits(**limits),
        drained_lines=tuple(drained),
    )


def lock_command(layout: Layout, info: str, *, force: bool = False) -> str:
    """Take the lock (atomic mkdir); prints ``acquired``, or ``held`` and the holder's info."""
    lock = q(layout.lock)
    take = f"mkdir -p {q(layout.root)} && mkdir {lock} 2>/dev/null"
    if force:
        take = f"mkdir -p {q(layout.root)} && rm -rf {lock} && mkdir {lock}"
    return (
        f"if {take}; then printf '%s\\n' {q(info)} > {lock}/info && echo acquired; "
        f'else echo "held $(tr "\\n" " " < {lock}/info 2>/dev/null)"; fi'
    )


def lock_and_probe_command(layout: Layout, info: str, *, force: bool = False) -> str:
    """Take the lock and, in the same round trip, report the state now that we hold it."""
    return f"{lock_command(layout, info, force=force)}; {probe_command(layout)}"


def unlock_command(layout: Layout, token: str) -> str:
    """Release the lock only if this deploy holds it."""
    lock = q(layout.lock)
    return f"grep -qx {q('token=' + token)} {lock}/info 2>/dev/null && rm -rf {lock}; true"


def prepare_command(layout: Layout, rid: str) -> str:
    """Create the layout and a fresh incoming dir (stale uploads are removed: we hold the lock)."""
    r = q(layout.root)
    return (
        f"mkdir -p {r}/releases {r}/run {r}/log {r}/state && "
        f"rm -rf {r}/releases/.incoming-* && mkdir {q(layout.incoming(rid))}"
    )


def reuse_binary_command(layout: Layout, rid: str, source: str) -> str:
    src = q(layout.release(source) + "/caddy")
    dst = q(layout.incoming(rid) + "/caddy")
    return f"ln {src} {dst} 2>/dev/null || cp -p {src} {dst}"


#: exit status of ``install_release_command`` when ``caddy validate`` refuses the config
VALIDATE_REFUSED = 3


def install_release_command(
    layout: Layout, rid: str, binary_sha: str, config_sha: str, *, uploaded: bool = True
) -> str:
    """Verify the upload, ``caddy validate`` it, and publish it as a release: one round trip.

    Exit 3: validate refused the config (the upload is discarded); other non-zero: a
    sha256 mismatch or a file-system failure.
    """
    return (
        f"{verify_command(layout, rid, binary_sha, config_sha, binary=uploaded)} && "
        f"{{ {validate_command(layout, rid)} || {{ {discard_incoming_command(layout)}; "
        f"exit {VALIDATE_REFUSED}; }}; }} && {publish_command(layout, rid)}"
    )


def verify_command(
    layout: Layout, rid: str, binary_sha: str, config_sha: str, *, binary: bool = True
) -> str:
    """Check what arrived, by sha256, and make the binary executable.

    ``binary=False``: the binary is a hard link to a kept (already verified) release.
    """
    inc = q(layout.incoming(rid))
    sums = (f"{binary_sha}  caddy\n" if binary else "") + f"{config_sha}  caddy.json\n"
    return (
        f"cd {inc} && printf %s {q(sums)} | sha256sum --check --strict --quiet && chmod 755 caddy"
    )


def validate_command(layout: Layout, rid: str) -> str:
    """``caddy validate`` with the remote binary, on the uploaded config (before the switch)."""
    inc = layout.incoming(rid)
    return f"{layout.caddy_env} {q(inc + '/caddy')} validate --config {q(inc + '/caddy.json')} 2>&1"


def publish_command(layout: Layout, rid: str) -> str:
    """Turn the verified upload into a release (atomic rename)."""
    return f"mv -T {q(layout.incoming(rid))} {q(layout.release(rid))}"


def discard_incoming_command(layout: Layout) -> str:
    return f"rm -rf {q(layout.releases)}/.incoming-*"


def switch_command(layout: Layout, rid: str) -> str:
    """Point ``current`` at a release atomically (symlink + rename) and stamp its activation.

    First the shell's pid goes into the lock: if the link drops while the rest of the
    command line (the reload, the restart) still runs, ``settle_command`` waits for it.
    """
    r = q(layout.root)
    return (
        f"echo $$ > {q(layout.lock + '/pid')} 2>/dev/null; "
        f"ln -sfn releases/{q(rid)} {r}/.current.new && mv -T {r}/.current.new {r}/current && "
        f"date +%s.%N > {q(layout.release(rid) + '/activated')}"
    )


def settle_command(layout: Layout, tries: int = 200) -> str:
    """After a dropped link: let the command line that switched finish before undoing it.

    Waits up to ``tries`` x 0.05 s for the shell ``switch_command`` recorded to exit (a
    dropped session does not stop it); without a record, returns at once. It kills
    nothing: after a long wait that pid may be another process.
    """
    pid = q(layout.lock + "/pid")
    return (
        f'p=$(cat {pid} 2>/dev/null); rm -f {pid}; if [ -n "$p" ]; then '
        f"{_wait_gone('$p', tries)}; fi; true"
    )


def unswitch_command(layout: Layout) -> str:
    """After a failed first install: no release is current."""
    return f"rm -f {q(layout.current)}"


def _admin_address(layout: Layout) -> str:
    return q(f"unix/{layout.admin_socket}")


def _wait_gone(pid_expr: str, tries: int = 100) -> str:
    return (
        f"for i in $(seq {tries}); do kill -0 {pid_expr} 2>/dev/null || break; sleep 0.05; done; "
        f"! kill -0 {pid_expr} 2>/dev/null"
    )


def start_command(layout: Layout, mode: str) -> str:
    if mode == "systemd":
        return f"systemctl start {SERVICE}"
    cur = layout.current
    sock_dir = layout.admin_socket.rsplit("/", 1)[0] or "/"
    return (
        f"mkdir -p {q(sock_dir)} {q(layout.root + '/run')} {q(layout.root + '/log')} && "
        f"cd {q(layout.root)} && {layout.caddy_env} {q(cur + '/caddy')} start "
        f"--config {q(cur + '/caddy.json')} --pidfile {q(layout.pidfile)} "
        f">> {q(layout.logfile)} 2>&1 < /dev/null"
    )


def reload_command(layout: Layout, mode: str) -> str:
    """Load ``current/caddy.json`` into the running process through the admin socket."""
    if mode == "systemd":
        return f"systemctl reload {SERVICE}"
    cur = layout.current
    return (
        f"{layout.caddy_env} {q(cur + '/caddy')} reload --config {q(cur + '/caddy.json')} "
        f"--address {_admin_address(layout)} --force 2>&1"
    )


def stop_command(layout: Layout, mode: str, pid: int | None) -> str:
    """Stop the running edge (supervised: admin API ``stop``, then wait; kill as a last resort)."""
    if mode == "systemd":
        return f"systemctl stop {SERVICE}"
    if pid is None:
        return "true"
    cur = layout.current
    return (
        f"{layout.caddy_env} {q(cur + '/caddy')} stop --address {_admin_address(layout)} "
        f">/dev/null 2>&1; {_wait_gone(str(pid))} || {{ kill {pid}; {_wait_gone(str(pid))}; }}; "
        f"rm -f {q(layout.pidfile)}"
    )


def restart_command(layout: Layout, mode: str, pid: int | None) -> str:
    """Stop the old process and start ``current``'s binary: live sessions drop."""
    if mode == "systemd":
        return f"systemctl restart {SERVICE}"
    return f"{stop_command(layout, mode, pid)} && {start_command(layout, mode)}"


def nofile_command() -> str:
    """Supervised mode: raise the shell's open-files limit before caddy starts, to NOFILE
    where allowed (root), else the soft limit to the hard one (caddy inherits it)."""
    return f'{{ ulimit -n {NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }}'


def activation_command(layout: Layout, mode: str, action: Action, pid: int | None) -> str:
    """The command that brings ``current`` up for ``action`` ('' for none)."""
    starts = mode != "systemd" and action in (Action.FIRST_INSTALL, Action.START, Action.RESTART)
    limit = f"{nofile_command()}; " if starts else ""
    if action is Action.FIRST_INSTALL:
        return enable_command() if mode == "systemd" else limit + start_command(layout, mode)
    if action is Action.START:
        return limit + start_command(layout, mode)
    if action is Action.RELOAD:
        return reload_command(layout, mode)
    if action is Action.RESTART:
        return limit + restart_command(layout, mode, pid)
    return ""


def install_unit_commands(unit_tmp: str) -> list[str]:
    """First install under systemd: service user, unit file, enable --now."""
    return [
        f"id -u {SERVICE_USER} >/dev/null 2>&1 || useradd --system --no-create-home "
        f"--home-dir /var/lib/{SERVICE_USER} --shell /usr/sbin/nologin {SERVICE_USER}",
        f"mv -f {q(unit_tmp)} {UNIT_PATH} && chmod 644 {UNIT_PATH} && systemctl daemon-reload",
    ]


def migrate_req_command(*, runtime: bool, persist: bool) -> str:
    """net.ipv4.tcp_migrate_req=1 now (``runtime``) and across reboots (``persist``: drop-in)."""
    steps = []
    if persist:
        tmp = SYSCTL_DROPIN.replace("/60-", "/.60-") + ".new"
        text = q("# tailwart edge: reloads hand queued connections to the new listener")
        steps.append(
            f"mkdir -p /etc/sysctl.d && printf '%s\\n' {text} {q(MIGRATE_SYSCTL + ' = 1')} "
            f"> {tmp} && chmod 644 {tmp} && mv -f {tmp} {SYSCTL_DROPIN}"
        )
    if runtime:
        steps.append(f"sysctl -w {MIGRATE_SYSCTL}=1")
    return " && ".join(steps)


def enable_command() -> str:
    return f"systemctl enable --now {SERVICE}"


def finish_command(layout: Layout, line: str, token: str, prune: tuple[str, ...] = ()) -> str:
    """After a deploy: audit line, prune old releases, release the lock (one round trip)."""
    steps = [audit_command(layout, line)]
    if prune:
        steps.append(prune_command(layout, prune))
    steps.append(unlock_command(layout, token))
    return "; ".join(steps)


def write_drained_command(layout: Layout, tmp: str) -> str:
    """Move an uploaded drained file into place (atomic rename)."""
    return f"mv -f {q(tmp)} {q(layout.drained)}"


def audit_command(layout: Layout, line: str) -> str:
    """Append one audit line; the source address comes from the SSH session itself."""
    return f'printf "%s from=%s\\n" {q(line)} "${{SSH_CLIENT%% *}}" >> {q(layout.audit)}'


def prune_command(layout: Layout, rids: tuple[str, ...]) -> str:
    paths = " ".join(q(layout.release(rid)) for rid in rids)
    return f"rm -rf {paths}"


def status_command(layout: Layout, lines: int, pid: int | None) -> str:
    """Extra status facts: the version of the RUNNING binary, the last audit lines."""
    r = q(layout.root)
    exe = f"/proc/{int(pid)}/exe" if pid else f"{r}/current/caddy"
    return (
        f'v=$({exe} version 2>/dev/null | cut -d" " -f1); echo "version ${{v:-?}}"; '
        f'echo "--- audit ---"; tail -n {int(lines)} {r}/audit.log 2>/dev/null; true'
    )


def meta_text(binary_sha: str, config_sha: str, version: str, created: str, by: str) -> str:
    return (
        f"binary_sha256={binary_sha}\nconfig_sha256={config_sha}\n"
        f"version={version.split()[0] if version else '?'}\ncreated={created}\n"
        f"by={by.replace(' ', '_')}\n"
    )
