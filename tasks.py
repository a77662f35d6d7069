"""tailwart's operator commands. `inv --list` is the table of contents.

Thin by design: each task turns flags into one call into ``src/tailwart`` and
prints the result. Heavy libraries are imported inside the code paths that use them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from tailwart.cli import ENV_FILE_HELP, STRICT_HELP, exits, load_settings

ENV = {"env_file": ENV_FILE_HELP, "strict": STRICT_HELP}
EXAMPLE_HELP = "use the built-in example values instead of a .env file"

# ---------------------------------------------------------------- operator surface


@task(help={**ENV, "example": EXAMPLE_HELP})
@exits
def render(c: Context, env_file: str = ".env", strict: bool = False, example: bool = False) -> None:
    """Write caddy/caddy.json and caddy/jmap.caddy from .env (only when they change)."""
    from tailwart.render_files import write_rendered

    settings = load_settings(env_file, strict, example)
    for line in write_rendered(settings, Path.cwd()):
        print(line)


@task(help={**ENV, "example": EXAMPLE_HELP, "json": "print the findings as JSON"})
@exits
def check(
    c: Context, env_file: str = ".env", strict: bool = False, example: bool = False,
    json: bool = False,
) -> None:
    """Static consistency checks of .env, config.toml, compose, caddy.json, git hygiene."""
    from tailwart.checks.run import run_checks

    settings = load_settings(env_file, strict, example)
    run_checks(settings, Path.cwd(), as_json=json)


@task(help={"check": "write nothing; exit 1 if .env.example or the README table drifted"})
@exits
def env_example(c: Context, check: bool = False) -> None:
    """Regenerate .env.example and the README key table from settings/contract.py."""
    from tailwart.render_files import write_env_example

    print(write_env_example(Path.cwd(), check=check))


# ---------------------------------------------------------------- edge (build, run, demo)


@task(
    help={
        "os": "target OS (linux)",
        "arch": "target architecture: amd64 or arm64 (cross builds are verified offline)",
        "force": "rebuild even when the stamp says the binary is current",
        "verbose": "stream the go/xcaddy output",
    }
)
@exits
def build_caddy(
    c: Context, os: str = "linux", arch: str = "amd64", force: bool = False, verbose: bool = False
) -> None:
    """Build caddy + caddy-l4 (pins: caddy/pins.toml) with xcaddy into caddy/bin/, verified."""
    from tailwart.edge.build import describe, ensure_caddy

    built = ensure_caddy(
        os, arch, force=force, verbose=verbose, progress=lambda m: print(m, file=sys.stderr)
    )
    print(describe(built))


@task(
    help={
        **ENV,
        "example": EXAMPLE_HELP,
        "listen_host": "address to listen on (default 127.0.0.1; '' = all addresses)",
        "port_offset": "listen on mail port + OFFSET (default 10000: 25 → 10025, …)",
        "ports": "explicit listen ports, e.g. 25=2525,465=2465 (override the offset)",
        "upstream_host": "dial this host instead of MAILBOX_FQDN (e.g. 127.0.0.1)",
        "validate_only": "render and run `caddy validate`, then exit",
    }
)
@exits
def edge_run(
    c: Context,
    env_file: str = ".env",
    strict: bool = False,
    example: bool = False,
    listen_host: str = "127.0.0.1",
    port_offset: int = 10000,
    ports: str = "",
    upstream_host: str = "",
    validate_only: bool = False,
) -> None:
    """Run the rendered edge locally on unprivileged ports (after caddy validate); Ctrl-C stops."""
    from tailwart.edge.run import edge_run as run

    settings = load_settings(env_file, strict, example)
    code = run(
        settings,
        listen_host=listen_host,
        port_offset=port_offset,
        ports=ports,
        upstream_host=upstream_host,
        validate_only=validate_only,
        progress=lambda m: print(m, file=sys.stderr),
    )
    if code != 0:
        raise SystemExit(code)


@task
@exits
def demo(c: Context) -> None:
    """Try it: build caddy-l4, put it before a stand-in mailbox on loopback, prove PROXY v2."""
    from tailwart.edge.demo import run_demo

    run_demo(progress=lambda m: print(m, file=sys.stderr))


# ---------------------------------------------------------------- edge deploy

# ---------------------------------------------------------------- mailbox (compose)

# ---------------------------------------------------------------- tailnet policy

# ---------------------------------------------------------------- backends and doctor


@task(
    help={
        **ENV,
        "dry_run": "print the plan and change nothing",
        "fix_password": "ALTER ROLE the stalwart role whose password drifted from .env",
        "init_layout": "apply a single-node Garage layout when none is applied yet",
    }
)
@exits
def bootstrap(
    c: Context,
    env_file: str = ".env",
    strict: bool = False,
    dry_run: bool = False,
    fix_password: bool = False,
    init_layout: bool = False,
) -> None:
    """Create what Stalwart needs on Postgres, Redis and Garage: plan first, then apply.

    Idempotent. The Postgres admin password (PG_ADMIN_USER) comes from PG_ADMIN_PASSWORD
    in the environment or a prompt; it is never stored.
    """
    from tailwart.backends.bootstrap import bootstrap as run_bootstrap

    settings = load_settings(env_file, strict)
    run_bootstrap(settings, dry_run=dry_run, fix_password=fix_password, init_layout=init_layout)


@task(
    iterable=["port"],
    help={
        **ENV,
        "json": "print the findings as JSON (shape documented in the README)",
        "only": "comma-separated groups: backends, edge, dns, tls, outbound",
        "edge": "host the edge and TLS checks dial (default: EDGE_PUBLIC_IP, else MAIL_HOSTNAME)",
        "port": "PUBLIC=ACTUAL: dial another port for a public one, e.g. 25=2525 (repeatable)",
        "ca_file": "extra CA bundle the TLS checks trust (a private CA)",
        "timeout": "seconds each check may take (default 10)",
    },
)
@exits
def doctor(
    c: Context,
    env_file: str = ".env",
    strict: bool = False,
    json: bool = False,
    only: str = "",
    edge: str = "",
    port: list[str] | None = None,
    ca_file: str = "",
    timeout: float = 10.0,
) -> None:
    """Live checks of backends, edge ports, DNS, TLS and outbound mail; exit 1 on any error."""
    from tailwart.doctor.registry import DoctorOptions, parse_only, parse_port_map
    from tailwart.doctor.report import doctor as run_doctor

    parse_only(only)
    options = DoctorOptions(edge, parse_port_map(port or []), ca_file, timeout)
    settings = load_settings(env_file, strict)
    run_doctor(settings, options, only=only, as_json=json)
