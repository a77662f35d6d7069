"""Running the rendered edge locally: validate, start, reload through the admin socket, stop.

Used by ``inv edge-run`` (foreground, for inspection), ``inv demo``, the integration
tests and the benchmark. Caddy's data and autosave dirs are pointed into the work
dir, so a run leaves nothing in the user's home.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from ..errors import OperationError, UsageError
from ..files import write_atomic
from ..settings import Settings
from .render import MAIL_PORTS, RUNTIME_ENV, EdgeLayout, caddy_json

#: the line caddy logs once the config is loaded and every listener is up
READY_MARK = "serving initial configuration"
START_TIMEOUT = 20.0


class EdgeRunError(OperationError):
    """The local edge did not validate, start, reload or stop (exit 1)."""


def local_layout(
    base: EdgeLayout,
    *,
    listen_host: str = "127.0.0.1",
    port_offset: int = 10000,
    ports: Mapping[int, int] | None = None,
    upstream_host: str | None = None,
    upstream: Mapping[int, int] | None = None,
    admin_socket: str,
) -> EdgeLayout:
    """``base`` moved onto unprivileged ports: mail port + offset, or explicit ``ports``."""
    listen = {port: port + port_offset for _, port in MAIL_PORTS}
    listen.update(ports or {})
    problems = [
        f"  port {p} → {lp}: outside 1..65535" for p, lp in listen.items() if not 0 < lp < 65536
    ]
    if problems:
        raise UsageError("edge-run: bad listen ports:\n" + "\n".join(problems))
    return replace(
        base,
        listen_host=listen_host,
        listen=listen,
        upstream_host=upstream_host or base.upstream_host,
        # --upstream-host: that one host stands for every node
        upstream_hosts=() if upstream_host else base.upstream_hosts,
        upstream=dict(upstream) if upstream is not None else base.upstream,
        admin_socket=admin_socket,
    )


def parse_port_map(text: str) -> dict[int, int]:
    """``"25=2525,465=2465"`` → {25: 2525, 465: 2465} (``flags.port_map``: the syntax of
    ``inv doctor --port`` too); UsageError listing every bad item."""
    from ..flags import port_map

    out, problems = port_map("--ports", [text], {port for _, port in MAIL_PORTS})
    if problems:
        raise UsageError("bad --ports:\n" + "\n".join(f"  {p}" for p in problems))
    return out


def caddy_env(workdir: Path) -> dict[str, str]:
    """Caddy's environment: data, config and autosave inside ``workdir``; the Go runtime
    settings of the unit (RUNTIME_ENV)."""
    env = {**os.environ, **RUNTIME_ENV}
    env["XDG_DATA_HOME"] = str(workdir / "data")
    env["XDG_CONFIG_HOME"] = str(workdir / "config")
    env.pop("CADDY_ADMIN", None)
    return env


def validate(caddy: Path, config: Path, workdir: Path) -> None:
    """``caddy validate``: provisions every module, binds nothing."""
    out = subprocess.run(
        [str(caddy), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=caddy_env(workdir),
        check=False,
    )
    if out.returncode != 0:
        raise EdgeRunError(
            f"caddy validate rejected {config}:\n{_tail(out.stderr)}\n"
            "Next: fix the settings the config is rendered from (`inv check`)."
        )


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join("    " + ln for ln in text.strip().splitlines()[-lines:])


class RunningEdge:
    """caddy-l4 running ``layout`` in the background. Use as a context manager."""

    def __init__(
        self,
        caddy: Path,
        layout: EdgeLayout,
        workdir: Path,
        *,
        env: Mapping[str, str | None] | None = None,
        config_text: str | None = None,
    ) -> None:
        """``env`` adds to (a None value removes from) caddy's environment; ``config_text``
        replaces the rendered caddy.json (the benchmark measures variants this way)."""
        self.caddy = caddy
        self.layout = layout
        self.workdir = workdir
        self.env_changes = dict(env or {})
        self.config_text = config_text
        self.config = workdir / "caddy.json"
        self.log = workdir / "caddy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_address(self) -> str:
        return f"unix/{self.layout.admin_socket}"

    def __enter__(self) -> RunningEdge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, validate it, start caddy and wait until it serves."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.config, self.config_text or caddy_json(self.layout))
        validate(self.caddy, self.config, self.workdir)
        env = caddy_env(self.workdir)
        for name, value in self.env_changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.caddy), "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise EdgeRunError(
                    f"caddy exited with {code} at start:\n{_tail(self.log_text())}\n"
                    "Next: a listen port may be in use; pick others (--port-offset/--ports)."
                )
            if READY_MARK in self.log_text():
                return
            time.sleep(0.05)
        self.stop()
        raise EdgeRunError(
            f"caddy did not start within {START_TIMEOUT:.0f}s:\n{_tail(self.log_text())}"
        )

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def reload(self, layout: EdgeLayout | None = None, *, force: bool = True) -> None:
        """``caddy reload`` through the admin socket (optionally with a new layout)."""
        if layout is not None:
            if layout.admin_socket != self.layout.admin_socket:
                raise UsageError("reload: the admin socket cannot change here")
            self.layout = layout
            write_atomic(self.config, caddy_json(layout))
        cmd = [str(self.caddy), "reload", "--config", str(self.config)]
        cmd += ["--address", self.admin_address] + (["--force"] if force else [])
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=60,
            env=caddy_env(self.workdir),
            check=False,
        )
        if out.returncode != 0:
            raise EdgeRunError(f"caddy reload failed:\n{_tail(out.stderr)}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop caddy (SIGTERM, then SIGKILL) and wait for it: nothing is left running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(FileNotFoundError):
            Path(self.layout.admin_socket).unlink()


def short_tempdir(prefix: str = "tailwart-edge-") -> Path:
    """A temp dir with a short path (unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if Path("/tmp").is_dir() else None))


def run_foreground(caddy: Path, layout: EdgeLayout, workdir: Path) -> int:
    """Validate, then run caddy attached to the terminal until Ctrl-C / SIGTERM."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "caddy.json"
    write_atomic(config, caddy_json(layout))
    validate(caddy, config, workdir)
    print(f"caddy validate: ok ({config})", flush=True)
    for name, port in layout.served():
        listen = f"{layout.listen_host or '*'}:{layout.listen_port(port)}"
        print(
            f"  {name:<12} {listen:<22} → "
            + ", ".join(f"{n}:{layout.upstream_port(port)}" for n in layout.serving())
            + " (PROXY v2)",
            flush=True,
        )
    print(f"  admin        unix socket {layout.admin_socket}; Ctrl-C stops", flush=True)
    # Ctrl-C and SIGTERM are forwarded to caddy, never raised here: a signal that
    # lands before caddy is started is held and sent as soon as it runs, so caddy
    # can never outlive this process (it holds the terminal's output).
    started: list[subprocess.Popen[bytes]] = []
    held: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not started:
            held.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            started[0].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started.append(
            subprocess.Popen(
                [str(caddy), "run", "--config", str(config)],
                env=caddy_env(workdir),
                stdin=subprocess.DEVNULL,
            )
        )
        for signum in held:
            forward(signum, None)
        return started[0].wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started and started[0].poll() is None:
            started[0].kill()
            started[0].wait()


def edge_run(
    settings: Settings,
    *,
    listen_host: str = "127.0.0.1",
    port_offset: int = 10000,
    ports: str = "",
    upstream_host: str = "",
    validate_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> int:
    """``inv edge-run``: the edge rendered from ``settings``, moved onto local ports, run."""
    import shutil

    from .. import flags
    from .build import _host_target, ensure_caddy
    from .render import layout_for

    problems = [
        p
        for p in (
            flags.ip_or_empty("--listen-host", listen_host),
            flags.host("--upstream-host", upstream_host) if upstream_host else None,
            flags.count("--port-offset", port_offset, least=0, most=65535 - 993),
            flags.control("--ports", ports),
        )
        if p
    ]
    explicit: dict[int, int] = {}
    try:
        explicit = parse_port_map(ports)
    except UsageError as exc:
        problems.append(str(exc).replace("\n  ", "\n    "))
    if problems:
        raise UsageError("edge-run: nothing was started:\n" + "\n".join(f"  {p}" for p in problems))
    built = ensure_caddy(*_host_target(), progress=progress)
    work = short_tempdir()
    try:
        layout = local_layout(
            layout_for(settings),
            listen_host=listen_host,
            port_offset=port_offset,
            ports=explicit,
            upstream_host=upstream_host or None,
            admin_socket=str(work / "admin.sock"),
        )
        if validate_only:
            config = work / "caddy.json"
            write_atomic(config, caddy_json(layout))
            validate(built.path, config, work)
            print(f"caddy validate: ok ({built.path.name})")
            return 0
        return run_foreground(built.path, layout, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
