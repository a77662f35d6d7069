"""tailwart's operator commands. `inv --list` is the table of contents.

Thin by design: each task turns flags into one call into ``src/tailwart`` and
prints the result. Heavy libraries are imported inside the code paths that use them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from tailwart.cli import ENV, EnvFlags, operator_task
from tailwart.edge.flag_groups import (
    FORCE_UNLOCK_HELP,
    MESSAGE_HELP,
    MODE_HELP,
    DeployFlags,
    DrainFlags,
    EdgeHosts,
)
from tailwart.plan import CHECK_HELP, JSON_HELP
from tailwart.policy.flag_groups import PolicyMerge
from tailwart.progress import to_stderr
from tailwart.schedule import ScheduleFlags

if TYPE_CHECKING:
    from tailwart.settings import Settings

EDGE_HOSTS = EdgeHosts()
DEPLOY_FLAGS = DeployFlags()
DRAIN_FLAGS = DrainFlags()
MERGE = PolicyMerge()
SCHEDULE = ScheduleFlags()
EXAMPLE_HELP = "use the built-in example values instead of a .env file"

# ---------------------------------------------------------------- operator surface


@operator_task(help={"example": EXAMPLE_HELP})
def render(c: Context, env: EnvFlags = ENV, example: bool = False) -> None:
    """Write caddy/caddy.json, caddy/jmap.caddy and config/config.json from .env (if changed)."""
    from tailwart.render_files import write_rendered

    settings = env.load(example)
    for line in write_rendered(settings, Path.cwd()):
        print(line)


@operator_task(help={"example": EXAMPLE_HELP, "json": "print the findings as JSON"})
def check(
    c: Context,
    env: EnvFlags = ENV,
    example: bool = False,
    json: bool = False,
) -> None:
    """Static consistency checks of .env, config.json, compose, caddy.json, git hygiene."""
    from tailwart.checks.run import run_checks

    settings = env.load(example)
    run_checks(settings, Path.cwd(), as_json=json)


@operator_task(help={"check": "write nothing; exit 1 if .env.example or the docs' table drifted"})
def env_example(c: Context, check: bool = False) -> None:
    """Regenerate .env.example and the docs' .env key table from settings/contract.py."""
    from tailwart.render_files import write_env_example

    print(write_env_example(Path.cwd(), check=check))


@operator_task(help={"check": "write nothing; exit 1 if a generated part of docs/ drifted"})
def docs(c: Context, check: bool = False) -> None:
    """Regenerate the reference parts of docs/ (.env keys, tasks and flags, check ids)."""
    from tailwart.reference_docs import write_reference

    print(write_reference(Path(__file__).resolve().parent, check=check))


# ---------------------------------------------------------------- edge (build, run, demo)


@operator_task(
    help={
        "os": "target OS (linux)",
        "arch": "target architecture: amd64 or arm64 (cross builds are verified offline)",
        "force": "rebuild even when the stamp says the binary is current",
        "verbose": "stream the go/xcaddy output",
    }
)
def build_caddy(
    c: Context, os: str = "linux", arch: str = "amd64", force: bool = False, verbose: bool = False
) -> None:
    """Build caddy + caddy-l4 (pins: caddy/pins.toml) with xcaddy into caddy/bin/, verified."""
    from tailwart.edge.build import describe, ensure_caddy

    built = ensure_caddy(os, arch, force=force, verbose=verbose, progress=to_stderr)
    print(describe(built))


@operator_task(
    help={
        "example": EXAMPLE_HELP,
        "listen_host": "address to listen on (default 127.0.0.1; '' = all addresses)",
        "port_offset": "listen on mail port + OFFSET (default 10000: 25 → 10025, …)",
        "ports": "explicit listen ports, e.g. 25=2525,465=2465 (override the offset)",
        "upstream_host": "dial this host instead of MAILBOX_FQDN (e.g. 127.0.0.1)",
        "validate_only": "render and run `caddy validate`, then exit",
    }
)
def edge_run(
    c: Context,
    env: EnvFlags = ENV,
    example: bool = False,
    listen_host: str = "127.0.0.1",
    port_offset: int = 10000,
    ports: str = "",
    upstream_host: str = "",
    validate_only: bool = False,
) -> None:
    """Run the rendered edge locally on unprivileged ports (after caddy validate); Ctrl-C stops."""
    from tailwart.edge.run import edge_run as run

    settings = env.load(example)
    code = run(
        settings,
        listen_host=listen_host,
        port_offset=port_offset,
        ports=ports,
        upstream_host=upstream_host,
        validate_only=validate_only,
        progress=to_stderr,
    )
    if code != 0:
        raise SystemExit(code)


@operator_task
def demo(c: Context) -> None:
    """Try it: build caddy-l4, put it before a stand-in mailbox on loopback, prove PROXY v2."""
    from tailwart.edge.demo import run_demo

    run_demo(progress=to_stderr)


# ---------------------------------------------------------------- edge deploy


@operator_task(iterable=["host"], auto_shortflags=False)
def deploy_edge(
    c: Context,
    edge: EdgeHosts = EDGE_HOSTS,
    env: EnvFlags = ENV,
    flags: DeployFlags = DEPLOY_FLAGS,
) -> None:
    """Deploy the edge over SSH: plan, lock, upload what is missing, validate, switch, gate.

    Config-only changes reload through the admin socket (sessions survive); a new binary
    restarts. Any failure after the switch switches back. Hosts roll one at a time and the
    rollout stops at the first failure (exit 1, per-host report).
    """
    from tailwart.edge.deploy_release import deploy

    # --check plans like --dry-run: no lock, and no new host key is recorded
    targets = edge.targets(
        env.load(),
        dry_run=flags.dry_run or flags.check,
        keep=flags.keep or None,
        flags=flags.values(),
    )
    deploy(targets.jobs, flags.options(targets))


@operator_task(iterable=["host"], auto_shortflags=False)
def drain(
    c: Context,
    edge: EdgeHosts = EDGE_HOSTS,
    env: EnvFlags = ENV,
    flags: DrainFlags = DRAIN_FLAGS,
) -> None:
    """Stop sending new sessions to one mailbox node (--node): a config-only reload on
    every edge host; sessions already on the node finish on their own.

    The drained nodes are kept on each host (EDGE_ROOT/drained): deploy-edge keeps them
    drained. Refuses (exit 2) a node MAILBOX_NODES does not list, or the last serving one.
    """
    from tailwart.edge.deploy_release import drain_nodes

    targets = flags.targets(edge, env.load())
    drain_nodes(targets.jobs, flags.options(targets), flags.node, drain=True)


@operator_task(iterable=["host"], auto_shortflags=False)
def undrain(
    c: Context,
    edge: EdgeHosts = EDGE_HOSTS,
    env: EnvFlags = ENV,
    flags: DrainFlags = DRAIN_FLAGS,
) -> None:
    """Send new sessions to a drained mailbox node (--node) again: a config-only reload on
    every edge host."""
    from tailwart.edge.deploy_release import drain_nodes

    targets = flags.targets(edge, env.load())
    drain_nodes(targets.jobs, flags.options(targets), flags.node, drain=False)


@operator_task(
    iterable=["host"],
    auto_shortflags=False,
    help={
        "mode": MODE_HELP,
        "force_unlock": FORCE_UNLOCK_HELP,
        "message": MESSAGE_HELP,
        "to": "release id to go back to (default: the one active before current)",
        "dry_run": "say what the rollback would do; change nothing, take no lock",
    },
)
def rollback_edge(
    c: Context,
    edge: EdgeHosts = EDGE_HOSTS,
    to: str = "",
    env: EnvFlags = ENV,
    dry_run: bool = False,
    force_unlock: bool = False,
    message: str = "",
    mode: str = "auto",
) -> None:
    """Switch the edge back to a kept release (reload, or restart if the binary differs)."""
    from tailwart.edge.rollback import rollback
    from tailwart.edge.targets import DeployOptions, FlagValues

    values = FlagValues(mode=mode, message=message, to=to)
    t = edge.targets(env.load(), dry_run=dry_run, flags=values)
    opts = DeployOptions(
        ssh=t.ssh, mode=mode, dry_run=dry_run, force_unlock=force_unlock, message=message
    )
    rollback(t.jobs, opts, to or None)


@operator_task(
    iterable=["host"],
    auto_shortflags=False,
    help={"audit_lines": "how many audit lines to show per host (default 5)"},
)
def edge_status(
    c: Context, edge: EdgeHosts = EDGE_HOSTS, env: EnvFlags = ENV, audit_lines: int = 5
) -> None:
    """Each edge host: current release, running version, binary sha, listeners, lock, audit."""
    from tailwart.edge.status import status
    from tailwart.edge.targets import DeployOptions, FlagValues

    values = FlagValues(audit_lines=audit_lines)
    t = edge.targets(env.load(), dry_run=True, flags=values)
    status(t.jobs, DeployOptions(ssh=t.ssh), audit_lines=audit_lines)


# ---------------------------------------------------------------- mailbox (compose)


DRY_RUN_HELP = "print the exact docker commands (per node, with its DOCKER_HOST) and run nothing"
TIMEOUT_HELP = "seconds to wait for both containers to be healthy (default 300)"
NODE_HELP = "one mailbox node (a MAILBOX_NODES entry or its first label; default: every node)"


@operator_task(help={"dry_run": DRY_RUN_HELP, "timeout": TIMEOUT_HELP, "node": NODE_HELP})
def up(
    c: Context,
    env: EnvFlags = ENV,
    dry_run: bool = False,
    timeout: int = 300,
    node: str = "",
) -> None:
    """Start the mailbox (sidecar + Stalwart) after the static checks pass; wait until healthy.

    Several nodes: one after another, each healthy before the next, each on its own docker
    engine (MAILBOX_DOCKER_HOSTS).
    """
    from tailwart.mailbox.fleet import open_fleet

    open_fleet(c, env.env_file, env.strict, node).up(dry_run=dry_run, timeout=timeout)


@operator_task(
    help={
        "volumes": "also delete the stalwart-data volume (asks first unless --yes)",
        "yes": "do not ask before deleting volumes",
        "dry_run": DRY_RUN_HELP,
        "node": NODE_HELP,
    }
)
def down(
    c: Context,
    env: EnvFlags = ENV,
    volumes: bool = False,
    yes: bool = False,
    dry_run: bool = False,
    node: str = "",
) -> None:
    """Stop and remove the mailbox containers; the data volume is kept unless --volumes."""
    from tailwart.mailbox.fleet import open_fleet

    fleet = open_fleet(c, env.env_file, env.strict, node)
    fleet.down(volumes=volumes, yes=yes, dry_run=dry_run)


@operator_task(help={"dry_run": DRY_RUN_HELP, "node": NODE_HELP})
def ps(c: Context, env: EnvFlags = ENV, dry_run: bool = False, node: str = "") -> None:
    """The mailbox's containers, their state and health, and the Stalwart image tag (each
    node under a header naming it)."""
    from tailwart.mailbox.fleet import open_fleet

    open_fleet(c, env.env_file, env.strict, node).ps(dry_run=dry_run)


@operator_task(
    help={
        "service": "ts-stalwart or stalwart (default: both)",
        "follow": "keep printing new lines",
        "since": "only lines since a time (e.g. 10m, 2026-01-02T15:04:05)",
        "dry_run": DRY_RUN_HELP,
        "node": NODE_HELP + "; --follow needs one",
    }
)
def logs(
    c: Context,
    env: EnvFlags = ENV,
    service: str | None = None,
    follow: bool = False,
    since: str = "",
    dry_run: bool = False,
    node: str = "",
) -> None:
    """Container logs of the mailbox (each node under a header naming it)."""
    from tailwart.mailbox.fleet import open_fleet

    fleet = open_fleet(c, env.env_file, env.strict, node)
    fleet.logs(service or "", follow=follow, since=since, dry_run=dry_run)


@operator_task(
    help={
        "service": "stalwart (default), or ts-stalwart / all to recreate both in order",
        "dry_run": DRY_RUN_HELP,
        "timeout": TIMEOUT_HELP,
        "node": NODE_HELP + "; one node is not drained",
        "no_drain": "roll without draining each node at the edge hosts (none reachable)",
        "drain_grace": "seconds between a node's drain and its restart, for sessions in "
        "flight to finish (default 10)",
    },
)
def restart(
    c: Context,
    env: EnvFlags = ENV,
    service: str | None = None,
    dry_run: bool = False,
    timeout: int = 300,
    node: str = "",
    no_drain: bool = False,
    drain_grace: float = 10.0,
) -> None:
    """Restart Stalwart alone, or recreate sidecar + Stalwart in order (ts-stalwart / all).

    Stalwart reads config.json, listeners and stores only at start. Never `docker compose
    restart` the sidecar or the stack: Stalwart shares its network namespace and dies with it.
    Several nodes (no --node): a rolling restart, one node at a time drained at the edge
    hosts (EDGE_HOSTS, as `inv drain` reaches them by default), restarted, healthy,
    undrained; a failure stops the roll there.
    """
    from tailwart.mailbox.fleet import open_fleet, roll_for

    fleet = open_fleet(c, env.env_file, env.strict, node)
    roll = None
    if len(fleet.stacks) > 1:
        roll = roll_for(fleet.stacks[0].settings, EDGE_HOSTS, no_drain, drain_grace, dry_run)
    fleet.restart(service or "stalwart", dry_run=dry_run, timeout=timeout, roll=roll)


# ---------------------------------------------------------------- tailnet policy


@operator_task(
    auto_shortflags=False,
    help={
        "file": "the policy file to merge into (a GitOps repo's policy.hujson)",
        "check": "write nothing, exit 1 when the merge would change the file",
    },
)
def acl_file(c: Context, file: str = "", check: bool = False, merge: PolicyMerge = MERGE) -> None:
    """Merge acl-snippet.hujson into a policy file and print the diff (--check: CI drift)."""
    from tailwart.errors import UsageError

    if not file:
        raise UsageError("inv acl-file: give the policy file to merge into: --file PATH")
    merge.into(file=file, check=check)


@operator_task(auto_shortflags=False)
def acl_tailscale(c: Context, merge: PolicyMerge = MERGE, env: EnvFlags = ENV) -> None:
    """Merge acl-snippet.hujson into the tailnet policy through the Tailscale API (.env)."""
    merge.into(env_file=env.env_file, strict=env.strict, tailscale=True)


@operator_task(
    auto_shortflags=False,
    help={"headscale": "the headscale server's URL (default HEADSCALE_URL)"},
)
def acl_headscale(
    c: Context, headscale: str = "", merge: PolicyMerge = MERGE, env: EnvFlags = ENV
) -> None:
    """Merge acl-snippet.hujson into a headscale server's policy (HEADSCALE_API_KEY)."""
    merge.into(env_file=env.env_file, strict=env.strict, headscale=headscale or True)


@operator_task(
    optional=["headscale"],
    auto_shortflags=False,  # no -h: `inv acl -h` must not mean --headscale
    help={
        "file": "merge into this policy file (a GitOps repo's policy.hujson); prints the diff",
        "check": "with --file: write nothing, exit 1 when the merge would change the file",
        "tailscale": "merge into the tailnet policy through the Tailscale API (.env credentials)",
        "headscale": "merge into a headscale server's policy (URL, default HEADSCALE_URL)",
    },
)
def acl(
    c: Context,
    file: str = "",
    check: bool = False,
    tailscale: bool = False,
    headscale: str = "",
    merge: PolicyMerge = MERGE,
    env: EnvFlags = ENV,
) -> None:
    """Merge acl-snippet.hujson into a tailnet policy (file, Tailscale API, headscale).

    The target by flag: --file PATH (as acl-file), --tailscale (as acl-tailscale) or
    --headscale [URL] (as acl-headscale); exactly one.
    """
    merge.into(
        env_file=env.env_file,
        strict=env.strict,
        file=file,
        check=check,
        tailscale=tailscale,
        headscale=headscale,
    )


# ---------------------------------------------------------------- backends and doctor


@operator_task(
    help={
        "dry_run": "print the plan and change nothing",
        "check": CHECK_HELP,
        "json": JSON_HELP,
        "fix_password": "ALTER ROLE the stalwart role whose password drifted from .env",
        "init_layout": "apply a single-node Garage layout when none is applied yet",
    }
)
def bootstrap(
    c: Context,
    env: EnvFlags = ENV,
    dry_run: bool = False,
    check: bool = False,
    json: bool = False,
    fix_password: bool = False,
    init_layout: bool = False,
) -> None:
    """Create what Stalwart needs on Postgres, Redis and Garage: plan first, then apply.

    Idempotent. The Postgres admin password (PG_ADMIN_USER) comes from PG_ADMIN_PASSWORD
    in the environment or a prompt; it is never stored.
    """
    from tailwart.backends.bootstrap import bootstrap as run_bootstrap

    settings = env.load()
    run_bootstrap(
        settings,
        dry_run=dry_run,
        check=check,
        as_json=json,
        fix_password=fix_password,
        init_layout=init_layout,
    )


@operator_task(
    iterable=["port"],
    help={
        "json": "print the findings as JSON (shape documented in the README)",
        "only": "comma-separated groups: backends, edge, dns, tls, management, stalwart, "
        "outbound, backup",
        "edge": "host the edge and TLS checks dial (default: EDGE_PUBLIC_IP, else MAIL_HOSTNAME)",
        "port": "MAILPORT=PORT: dial PORT for a public mail port (or 443, the JMAP vhost), e.g. "
        "25=2525 (repeatable, or comma-separated like edge-run --ports)",
        "ca_file": "extra CA bundle the TLS checks trust (a private CA)",
        "timeout": "seconds each check may take (default 10)",
        "record": "keep this run's findings in DOCTOR_HISTORY_DIR (for --diff)",
        "diff": "print what changed since the run recorded --since ago, not the table",
        "since": "with --diff: how far back, e.g. 90m, 24h, 7d (default 24h)",
        "report_to": "also send the report: mail (to DOCTOR_REPORT_TO), webhook "
        "(DOCTOR_WEBHOOK_URL), or mail,webhook",
        "prometheus": "print a Prometheus scrape job and alert rules for Stalwart's metrics "
        "(DOCTOR_LIMITS' thresholds) instead of checking",
    },
)
def doctor(
    c: Context,
    env: EnvFlags = ENV,
    json: bool = False,
    only: str = "",
    edge: str = "",
    port: list[str] | None = None,
    ca_file: str = "",
    timeout: float = 10.0,
    report_to: str = "",  # before --record: -r (its letters are all taken after it)
    record: bool = False,
    diff: bool = False,
    since: str = "",
    prometheus: bool = False,
) -> None:
    """Live checks of backends, edge ports, DNS, TLS and outbound mail; exit 1 on any error."""
    from tailwart.doctor.registry import doctor_options
    from tailwart.doctor.report import doctor as run_doctor
    from tailwart.doctor.report import report_options

    report, problems = report_options(record, diff, since, json, report_to)
    if prometheus:
        from tailwart.doctor.prometheus_rules import flag_problems

        problems += flag_problems(record=record, diff=diff, json=json, report_to=report_to)
    options = doctor_options(only, edge, port or [], ca_file, timeout, also=problems)
    settings = env.load()
    if prometheus:
        from tailwart.doctor.prometheus_rules import render

        print(render(settings), end="")
        return
    run_doctor(settings, options, only=only, as_json=json, report=report)


@operator_task
def doctor_schedule(c: Context, env: EnvFlags = ENV, units: ScheduleFlags = SCHEDULE) -> None:
    """Print a systemd timer + service (and a cron line) for a daily doctor report; --install."""
    from tailwart.doctor.schedule import doctor_job
    from tailwart.paths import repo_root
    from tailwart.schedule import schedule_for

    job = doctor_job(env.load())
    print(units.apply(schedule_for(job, repo_root(), env.env_file)), end="")


# ---------------------------------------------------------------- backup and restore

TO_HELP = "restic repository to use instead of BACKUP_REPOSITORY (path or s3:URL)"


@operator_task(
    help={
        "dry_run": "print what would be backed up and write nothing",
        "to": TO_HELP,
        "prune": "afterwards apply retention: restic forget --prune with BACKUP_KEEP_*",
        "schedule": "print a systemd timer + service (and a cron line) that run the backup nightly",
        "install": "with --schedule: write the units and enable the timer",
        "unit_dir": "with --install: an existing directory for the units (/etc/systemd/system)",
        "verify": "restic check reading 10% of the data back, and the newest manifest",
        "target_env": "with --verify: env file of scratch backends for a trial restore",
    }
)
def backup(
    c: Context,
    env: EnvFlags = ENV,
    dry_run: bool = False,
    to: str = "",
    prune: bool = False,
    schedule: bool = False,
    install: bool = False,
    unit_dir: str = "",
    verify: bool = False,
    target_env: str = "",
) -> None:
    """Back up the mailbox into restic: pg_dump (SCRAM), then every blob, then a manifest.

    The restic password (BACKUP_PASSWORD) reaches restic only through its environment.
    --schedule/--install/--unit-dir do what backup-schedule does; --verify/--target-env
    what backup-verify does.
    """
    settings = env.load()
    if schedule or install or unit_dir:
        _schedule(settings, env, to, ScheduleFlags(install, unit_dir, dry_run))
    elif verify or target_env:
        _verify(settings, env, to, target_env=target_env, dry_run=dry_run)
    else:
        from tailwart.backup.create import run_backup

        print(run_backup(settings, to=to, dry_run=dry_run, prune=prune, progress=to_stderr), end="")


@operator_task(help={"to": TO_HELP})
def backup_schedule(
    c: Context, env: EnvFlags = ENV, to: str = "", units: ScheduleFlags = SCHEDULE
) -> None:
    """Print a systemd timer + service (and a cron line) that back up nightly; --install."""
    _schedule(env.load(), env, to, units)


@operator_task(
    help={
        "to": TO_HELP,
        "target_env": "env file of scratch backends for a trial restore",
        "dry_run": "print what would be checked and restored; change nothing",
    }
)
def backup_verify(
    c: Context, env: EnvFlags = ENV, to: str = "", target_env: str = "", dry_run: bool = False
) -> None:
    """Check the backup: restic reads 10% of the data back, the newest manifest is whole."""
    _verify(env.load(), env, to, target_env=target_env, dry_run=dry_run)


def _schedule(settings: Settings, env: EnvFlags, to: str, units: ScheduleFlags) -> None:
    """The body of backup-schedule (and backup --schedule)."""
    from tailwart.backup.repository import repository
    from tailwart.backup.schedule import backup_schedule as schedule_for
    from tailwart.paths import repo_root

    repository(settings)
    print(units.apply(schedule_for(repo_root(), env.env_file, to)), end="")


def _verify(settings: Settings, env: EnvFlags, to: str, *, target_env: str, dry_run: bool) -> None:
    """The body of backup-verify (and backup --verify)."""
    from tailwart.backup.verify import run_verify

    report = run_verify(
        settings,
        to=to,
        target_env=target_env,
        dry_run=dry_run,
        strict=env.strict,
        progress=to_stderr,
    )
    print(report, end="")


@operator_task(
    help={
        "target_env": "env file naming the Postgres database and bucket to restore into",
        "snapshot": "snapshot id (or a unique prefix); default: the newest tailwart snapshot",
        "dry_run": "print the snapshot and the target's state; write nothing",
        "force": "restore into a target that is not empty (drops the dump's objects there)",
        "overwrite_live": "allow a target that names the live mailbox's database or bucket",
        "from_repo": "restic repository to read instead of BACKUP_REPOSITORY",
    }
)
def restore(
    c: Context,
    env: EnvFlags = ENV,
    target_env: str = "",
    snapshot: str = "latest",
    dry_run: bool = False,
    force: bool = False,
    overwrite_live: bool = False,
    from_repo: str = "",
) -> None:
    """Restore a backup into the backends of --target-env, then verify rows and blobs."""
    from tailwart.backup.restore import run_restore

    settings = env.load()
    print(
        run_restore(
            settings,
            target_env,
            snapshot=snapshot,
            dry_run=dry_run,
            force=force,
            overwrite_live=overwrite_live,
            from_repo=from_repo,
            strict=env.strict,
            progress=to_stderr,
        ),
        end="",
    )


# ---------------------------------------------------------------- Stalwart objects


@operator_task(
    help={
        "dry_run": "print the plan (create/update/replace/delete, and when each takes effect)",
        "check": CHECK_HELP,
        "json": JSON_HELP,
        "restart": "auto: restart Stalwart alone through compose when needed; never: apply "
        "what takes effect live, print what still needs a restart, exit 3",
        "phase": "all (default), or stores: only the blob, in-memory and search stores (a "
        "fresh store's first step, in recovery mode)",
    }
)
def provision(
    c: Context,
    env: EnvFlags = ENV,
    dry_run: bool = False,
    check: bool = False,
    json: bool = False,
    restart: str = "auto",
    phase: str = "all",
) -> None:
    """Make Stalwart hold the objects .env describes: observe, plan, apply, verify, reload.

    Reaches the management API at STALWART_MANAGEMENT_URL (default http://MAILBOX_FQDN:8080)
    as STALWART_MANAGEMENT_USER@MAIL_DOMAIN, a login Stalwart accepts only from
    STALWART_MANAGEMENT_NETWORKS. Objects tailwart does not own are never touched.
    """
    from tailwart.stalwart.provision import Options
    from tailwart.stalwart.provision import provision as run_provision

    settings = env.load()

    def restart_stalwart() -> None:
        from tailwart.mailbox.fleet import open_fleet, roll_for

        # several nodes: the rolling restart, each node drained at EDGE_HOSTS first
        fleet = open_fleet(c, env.env_file, env.strict)
        roll = roll_for(settings, EDGE_HOSTS) if len(fleet.stacks) > 1 else None
        fleet.restart("stalwart", roll=roll)

    code = run_provision(
        settings,
        Options(dry_run=dry_run, check=check, as_json=json, restart=restart, phase=phase),
        out=print,
        restart=restart_stalwart,
    )
    if code:
        raise SystemExit(code)


# ---------------------------------------------------------------- DNS records


@operator_task(
    help={
        "dry_run": "print the plan (every create, update and delete) and change nothing",
        "check": CHECK_HELP,
        "json": JSON_HELP,
        "zone": "print the records as a BIND zone fragment (for DNS without an API) and stop",
        "force": "replace records the operator set differently (reported otherwise)",
        "no_stalwart": "do not read the DKIM keys from Stalwart: the zone's DKIM records "
        "stay as they are",
    },
    auto_shortflags=False,
)
def dns(
    c: Context,
    env: EnvFlags = ENV,
    dry_run: bool = False,
    check: bool = False,
    json: bool = False,
    zone: bool = False,
    force: bool = False,
    no_stalwart: bool = False,
) -> None:
    """Publish MAIL_DOMAIN's records for the split topology: plan, then apply (octoDNS).

    MX, A/AAAA of the edge, SPF of the real outbound path, DKIM (read from Stalwart),
    DMARC, TLS-RPT, MTA-STS, the client names and SRV. Changes only records carrying
    tailwart's ownership TXT; the TSIG key comes from DNS_TSIG_* in .env.
    """
    from tailwart.dns.run import DnsOptions, run_dns
    from tailwart.plan import PlanFlags

    options = DnsOptions(
        PlanFlags(dry_run=dry_run, check=check, as_json=json),
        zone=zone,
        force=force,
        stalwart=not no_stalwart,
    )
    code = run_dns(env.load(), options, print)
    if code:
        raise SystemExit(code)


@operator_task(help={"timeout": TIMEOUT_HELP})
def first_start(c: Context, env: EnvFlags = ENV, timeout: int = 300) -> None:
    """A fresh store, no hand step: stores, defaults, the management login, full apply.

    Run once, after inv bootstrap, instead of inv up + inv provision on an empty database.
    """
    from tailwart.mailbox.stack import ComposeControl, check_timeout, open_stack
    from tailwart.stalwart.provision import first_start as run_first_start

    check_timeout(timeout)
    stack = open_stack(c, env.env_file, env.strict)
    stack.refuse_if_broken()
    stack.write_config()
    run_first_start(stack.settings, ComposeControl(stack, timeout), print)


@operator_task(help={"timeout": TIMEOUT_HELP})
def recover(c: Context, env: EnvFlags = ENV, timeout: int = 300) -> None:
    """Write the management login again from .env, through the recovery admin.

    Stalwart restarts in recovery mode (mail ports closed for the minute it takes), the
    recovery admin writes the role and account of STALWART_MANAGEMENT_USER with
    STALWART_MANAGEMENT_PASSWORD, then Stalwart restarts normally without it.
    """
    from tailwart.mailbox.stack import ComposeControl, check_timeout, open_stack
    from tailwart.stalwart.provision import recover as run_recover

    check_timeout(timeout)
    stack = open_stack(c, env.env_file, env.strict)
    stack.refuse_if_broken()
    run_recover(stack.settings, ComposeControl(stack, timeout), print)


@operator_task
def rotate_management(c: Context, env: EnvFlags = ENV) -> None:
    """A new STALWART_MANAGEMENT_PASSWORD: changed on the server, verified, then in .env.

    The old password stops working. The new one is never printed; until the last step
    it waits in <env-file>.rotating (mode 600).
    """
    from pathlib import Path

    from tailwart.stalwart.rotate import rotate

    rotate(env.load(), Path(env.env_file), print)


@operator_task(help={"dry_run": "explain the data-preserving path from v0.15.5 (required)"})
def migrate_stalwart(c: Context, env: EnvFlags = ENV, dry_run: bool = False) -> None:
    """Explain the move from the v0.15.5 (TOML) stack to v0.16.18: kept, wiped, steps."""
    from tailwart.errors import UsageError
    from tailwart.stalwart.migrate import explain

    if not dry_run:
        raise UsageError(
            "inv migrate-stalwart only explains the path (--dry-run): it has not been "
            "proven against real servers"
        )
    print(explain(env.load()), end="")
