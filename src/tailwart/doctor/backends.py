"""Doctor group ``backends``: Postgres over SCRAM, Redis AUTH and DB index, Garage S3 probe.

A Postgres login over loopback or a unix socket proves nothing where loopback
is ``trust``: the login check demands SCRAM from the server (libpq
``require_auth``) and a second check offers a wrong password to catch ``trust``.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..findings import Finding
from ..flags import printable
from .registry import Check, DoctorContext, error, ok, warning

GROUP = "backends"
BOOTSTRAP = "run inv bootstrap"


def _pg_connect(ctx: DoctorContext, password: str, dbname: str, scram: bool) -> Any:
    import psycopg

    s = ctx.settings
    extra: dict[str, Any] = {"require_auth": "scram-sha-256"} if scram else {}
    return psycopg.connect(
        host=s["STALWART_DB_HOST"],
        port=s.port("STALWART_DB_PORT"),
        user=s["STALWART_DB_USER"],
        password=password,
        dbname=dbname,
        connect_timeout=max(1, int(ctx.timeout)),
        autocommit=True,
        application_name="tailwart-doctor",
        **extra,
    )


def _reason(exc: Exception) -> str:
    """The server's words from a libpq error, without the "connection to server at" preamble."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[-1].strip()
    for marker in ("FATAL:", "ERROR:"):
        if marker in line:
            return line.rsplit(marker, 1)[1].strip()
    return line


def _where(ctx: DoctorContext) -> str:
    s = ctx.settings
    return f"{s['STALWART_DB_USER']}@{s['STALWART_DB_HOST']}:{s['STALWART_DB_PORT']}"


def postgres_login(ctx: DoctorContext) -> Finding:
    import psycopg

    from ..backends.postgres import is_loopback

    s = ctx.settings
    try:
        conn = _pg_connect(ctx, s["STALWART_DB_PASSWORD"], "postgres", scram=True)
    except psycopg.OperationalError as exc:
        reason = _reason(exc)
        if "password authentication failed" in reason:
            return error(
                f"{_where(ctx)}: STALWART_DB_PASSWORD is rejected over SCRAM",
                "the role's password drifted: inv bootstrap --fix-password (ALTER ROLE)"
                ", or put the current password in .env",
            )
        if "require_auth" in reason or "authentication method requirement" in reason:
            return error(
                f"{_where(ctx)}: the server did not ask for SCRAM-SHA-256 ({reason})",
                "pg_hba.conf: use scram-sha-256 for the tailnet address Stalwart connects from",
            )
        return error(
            f"{_where(ctx)}: cannot connect: {reason}",
            "check STALWART_DB_HOST/PORT and that Postgres listens on the tailnet",
        )
    conn.close()
    if is_loopback(s["STALWART_DB_HOST"]):
        return warning(
            f"{_where(ctx)}: SCRAM login over loopback, which proves nothing for Stalwart",
            "set STALWART_DB_HOST to the tailnet name Stalwart uses",
        )
    return ok(f"{_where(ctx)}: logged in over TCP with SCRAM-SHA-256")


def postgres_trust(ctx: DoctorContext) -> Finding:
    import psycopg

    wrong = "tailwart-wrong-" + secrets.token_hex(8)
    try:
        conn = _pg_connect(ctx, wrong, "postgres", scram=False)
    except psycopg.OperationalError as exc:
        reason = _reason(exc)
        if "password authentication failed" in reason:
            return ok(f"{_where(ctx)}: a wrong password is refused")
        return error(
            f"{_where(ctx)}: cannot connect: {reason}",
            "check STALWART_DB_HOST/PORT and that Postgres listens on the tailnet",
        )
    conn.close()
    return error(
        f"{_where(ctx)}: a WRONG password was accepted: pg_hba.conf says trust for this path",
        "use scram-sha-256 for every host rule Stalwart can match; never "
        "test passwords over loopback",
    )


def postgres_database(ctx: DoctorContext) -> Finding:
    import psycopg

    s = ctx.settings
    name, role = s["STALWART_DB_NAME"], s["STALWART_DB_USER"]
    try:
        conn = _pg_connect(ctx, s["STALWART_DB_PASSWORD"], name, scram=True)
    except psycopg.OperationalError as exc:
        reason = _reason(exc)
        if "does not exist" in reason:
            return error(f"database {name!r} does not exist", BOOTSTRAP)
        if "password authentication failed" in reason:
            return error(
                f"database {name!r} not checked: {role!r} cannot log in",
                "fix the login first (backends.postgres.login)",
            )
        return error(
            f"cannot open database {name!r} as {role!r}: {reason}",
            "fix the login first (backends.postgres.login)",
        )
    with conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    owner = row[0] if row else None
    if owner != role:
        return error(
            f"database {name!r} is owned by {owner!r}, not {role!r}",
            f"ALTER DATABASE {name} OWNER TO {role} (if it is Stalwart's)",
        )
    return ok(f"database {name!r} exists and is owned by {role!r}")


def postgres_primary(ctx: DoctorContext) -> Finding:
    """The stable address reaches the primary: ``pg_is_in_recovery()`` is false there (a
    standby behind it would refuse Stalwart's writes)."""
    import psycopg

    s = ctx.settings
    try:
        conn = _pg_connect(ctx, s["STALWART_DB_PASSWORD"], s["STALWART_DB_NAME"], scram=True)
    except psycopg.OperationalError as exc:
        return error(
            f"{_where(ctx)}: not checked: cannot log in ({_reason(exc)})",
            "fix the login first (backends.postgres.login)",
        )
    with conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery(), host(inet_server_addr()), current_setting('port')"
        ).fetchone()
    if row is None:
        return error(f"{_where(ctx)}: pg_is_in_recovery() answered nothing", "check the server")
    standby, address, port = row
    server = f"{address or 'a unix socket'}:{port}"
    if standby:
        return error(
            f"{_where(ctx)} reaches a standby ({server} is in recovery): Stalwart's writes "
            "would fail",
            "the stable address must follow the primary: check the HA engine's virtual "
            "address or pooler (Patroni: patronictl list)",
        )
    return ok(f"{_where(ctx)} reaches the primary ({server}, not in recovery)")


def _redis_target(ctx: DoctorContext) -> Any:
    from ..backends.redis_store import RedisTarget

    return RedisTarget.from_settings(ctx.settings)


def _redis_check(ctx: DoctorContext) -> str:
    if ctx.settings["STALWART_REDIS_SENTINELS"]:
        return "check STALWART_REDIS_SENTINELS/MASTER and backends.redis.sentinels"
    return "check STALWART_REDIS_HOST/PORT"


def _redis(ctx: DoctorContext) -> Any:
    from ..backends.redis_store import RedisTarget, client

    return client(RedisTarget.from_settings(ctx.settings), timeout=ctx.timeout)


def redis_auth(ctx: DoctorContext) -> Finding:
    import redis

    s = ctx.settings
    where = _redis_target(ctx).where
    conn = _redis(ctx)
    try:
        conn.ping()
    except redis.AuthenticationError as exc:
        if "without any password configured" in str(exc):
            return warning(
                f"{where}: Redis has no password (requirepass unset)",
                "set requirepass: the DB is shared with other apps",
            )
        return error(
            f"{where}: STALWART_REDIS_PASSWORD is rejected",
            "put the Redis password (requirepass or ACL user) in .env",
        )
    except redis.ResponseError as exc:
        if "invalid DB index" in str(exc) or "out of range" in str(exc):
            return error(
                f"{where}: DB {s['STALWART_REDIS_DB']} does not exist ({exc})",
                "choose a STALWART_REDIS_DB below the server's `databases` setting",
            )
        return error(f"{where}: {exc}", "check the Redis server")
    except redis.RedisError as exc:
        return error(f"{where}: cannot connect: {printable(str(exc))}", _redis_check(ctx))
    finally:
        conn.close()
    return ok(f"{where}: AUTH and PING answered")


def redis_db(ctx: DoctorContext) -> Finding:
    import redis

    from ..backends.redis_store import MARKER_KEY, MARKER_PREFIX, describe_foreign, inspect

    db = _redis_target(ctx).db
    conn = _redis(ctx)
    try:
        state = inspect(conn)
    except redis.RedisError as exc:
        return error(f"DB {db}: cannot inspect: {exc}", "fix backends.redis.auth first")
    finally:
        conn.close()
    if state.marker is not None and state.marker.startswith(MARKER_PREFIX):
        return ok(f"DB {db} carries tailwart's marker ({state.size} key(s))")
    if state.marker is not None:
        return error(
            f"DB {db}: {MARKER_KEY} holds a foreign value", "choose another STALWART_REDIS_DB"
        )
    if state.size == 0:
        return warning(f"DB {db} is empty and not claimed", BOOTSTRAP + " to claim it")
    return error(
        f"DB {db} is used by another app: {describe_foreign(state)}",
        "choose a free STALWART_REDIS_DB (an empty index)",
    )


def redis_sentinels(ctx: DoctorContext) -> Finding:
    """Every sentinel answers and names the same master; which ones do not."""
    from ..backends.redis_store import ask_sentinels

    target = _redis_target(ctx)
    answers = ask_sentinels(target, ctx.timeout)
    failing = [a for a in answers if a.master is None]
    named = sorted({a.master for a in answers if a.master is not None})
    up = len(answers) - len(failing)
    majority = up > len(answers) // 2
    said = "; ".join(f"sentinel {a.sentinel} {printable(a.problem)}" for a in failing)
    if not majority:
        return error(
            f"{said}: {up} of {len(answers)} sentinel(s) answer, no majority left to fail over",
            "start the sentinels (or fix STALWART_REDIS_SENTINELS / SENTINEL_PASSWORD)",
        )
    if len(named) > 1:
        who = "; ".join(f"{a.sentinel} names {a.master}" for a in answers if a.master)
        return warning(
            f"the sentinels disagree on master {target.master!r}: {who}",
            "a failover is under way: run inv doctor again in a minute",
        )
    if failing:
        return warning(
            f"{said}; {up} of {len(answers)} up name {named[0]} as master {target.master!r}",
            "start that sentinel: a failover needs a majority of them",
        )
    return ok(f"{up} sentinel(s) up; all name {named[0]} as master {target.master!r}")


def redis_master(ctx: DoctorContext) -> Finding:
    """The master most sentinels name answers ROLE as a master."""
    import redis

    from ..backends.redis_store import ask_sentinels, master_state

    target = _redis_target(ctx)
    named = [a.master for a in ask_sentinels(target, ctx.timeout) if a.master is not None]
    if not named:
        return error(
            f"no sentinel names a master {target.master!r}", "see backends.redis.sentinels"
        )
    address = max(sorted(set(named)), key=named.count)
    try:
        state = master_state(target, address, ctx.timeout)
    except redis.AuthenticationError:
        return error(
            f"master {target.master!r} at {address}: STALWART_REDIS_PASSWORD is rejected",
            "put the data nodes' password (requirepass) in .env",
        )
    except redis.RedisError as exc:
        return error(
            f"master {target.master!r} at {address} (named by the sentinels) is down: "
            f"{printable(str(exc))}",
            "the sentinels fail over after their down-after-milliseconds; if they do not, "
            "check their quorum",
        )
    if state.role != "master":
        return error(
            f"{address}, named master {target.master!r}, answers as {printable(state.role)}",
            "a failover is under way, or the sentinels are stale: run inv doctor again",
        )
    return ok(
        f"master {target.master!r} is {address}: answers as master, "
        f"{state.replicas} replica(s) connected"
    )


def s3_client(ctx: DoctorContext) -> Any:
    import boto3
    from botocore.config import Config

    s = ctx.settings
    config = Config(
        s3={"addressing_style": "path"},
        connect_timeout=ctx.timeout,
        read_timeout=ctx.timeout,
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://{s['STALWART_S3_HOST']}:{s['STALWART_S3_PORT']}",
        region_name=s["STALWART_S3_REGION"],
        aws_access_key_id=s["STALWART_S3_ACCESS_KEY"],
        aws_secret_access_key=s["STALWART_S3_SECRET_KEY"],
        config=config,
    )


def _s3_error(exc: Exception) -> tuple[str, str]:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return str(err.get("Code", "")), str(err.get("Message", ""))
    return type(exc).__name__, str(exc)


def _s3_advice(code: str, ctx: DoctorContext) -> str:
    s = ctx.settings
    if code == "AuthorizationHeaderMalformed":
        return (
            f"STALWART_S3_REGION ({s['STALWART_S3_REGION']!r}) must equal Garage's "
            "[s3_api] s3_region"
        )
    if code in ("AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return (
            "check STALWART_S3_ACCESS_KEY/SECRET_KEY and the key's read+write grant (inv bootstrap)"
        )
    if code in ("NoSuchBucket", "404"):
        return BOOTSTRAP + " to create the bucket"
    return "check STALWART_S3_HOST/PORT and the Garage node's health"


def garage_probe(ctx: DoctorContext) -> Finding:
    s = ctx.settings
    bucket = s["STALWART_S3_BUCKET"]
    client = s3_client(ctx)
    key = f"tailwart-doctor/probe-{secrets.token_hex(6)}"
    body = secrets.token_bytes(64)
    step = "PUT"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body)
        step = "GET"
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if got != body:
            return error(
                f"bucket {bucket!r}: GET returned other bytes than PUT stored",
                "check the Garage node's health",
            )
        step = "DELETE"
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code, message = _s3_error(exc)
        return error(
            f"bucket {bucket!r}: {step} failed: {code} {message}".rstrip(), _s3_advice(code, ctx)
        )
    return ok(f"bucket {bucket!r}: PUT, GET and DELETE of a probe object work")


def garage_region(ctx: DoctorContext) -> Finding:
    s = ctx.settings
    want = s["STALWART_S3_REGION"]
    try:
        location = s3_client(ctx).get_bucket_location(Bucket=s["STALWART_S3_BUCKET"])
    except Exception as exc:
        code, message = _s3_error(exc)
        if code == "AuthorizationHeaderMalformed":
            return error(
                f"Garage rejects requests signed for region {want!r}", _s3_advice(code, ctx)
            )
        return error(
            f"cannot ask for the bucket's region: {code} {message}".rstrip(), _s3_advice(code, ctx)
        )
    have = location.get("LocationConstraint") or ""
    if have != want:
        return error(
            f"Garage's region is {have!r}, STALWART_S3_REGION is {want!r}",
            "make STALWART_S3_REGION equal Garage's [s3_api] s3_region",
        )
    return ok(f"region {want!r} matches Garage's s3_region")


def _disk_use(node: Any) -> tuple[str, float] | None:
    """(node, percent in use) of a GetClusterStatus node, None when it reports no disk;
    ValueError when what it reports is not two byte counts."""
    if not isinstance(node, dict):
        raise ValueError("a node is not an object")
    part = node.get("dataPartition")
    if part is None:
        return None
    total, available = (part.get(k) if isinstance(part, dict) else None for k in _SPACE)
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (total, available)
    ):
        raise ValueError("a node's dataPartition is not two byte counts")
    assert isinstance(total, int) and isinstance(available, int)
    if total == 0 or available > total:
        raise ValueError("a node's dataPartition is not two byte counts")
    name = str(node.get("hostname") or node.get("id") or "?")[:64]
    return name, 100.0 * (total - available) / total


_SPACE = ("total", "available")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def garage_disk(ctx: DoctorContext) -> Finding:
    """The fullest Garage node's data disk against DOCTOR_LIMITS disk-percent (the admin
    API's GetClusterStatus, read with GARAGE_ADMIN_TOKEN)."""
    from ..backends.garage import GarageAdmin
    from ..backends.plan import BackendError
    from ..flags import printable
    from ..settings.limits import parse

    s = ctx.settings
    api = GarageAdmin(s["GARAGE_ADMIN_URL"], s["GARAGE_ADMIN_TOKEN"], timeout=ctx.timeout)
    try:
        status = api.get("GetClusterStatus")
    except BackendError as exc:
        return error(str(exc), "check GARAGE_ADMIN_URL and GARAGE_ADMIN_TOKEN")
    finally:
        api.close()
    limit = parse(s["DOCTOR_LIMITS"])["disk-percent"]
    try:
        nodes = status.get("nodes") if isinstance(status, dict) else None
        if not isinstance(nodes, list):
            raise ValueError("nodes is not a list")
        used = [found for found in map(_disk_use, nodes) if found is not None]
    except ValueError as exc:
        return error(
            f"Garage's cluster status: {exc}", "is GARAGE_ADMIN_URL a Garage v2 admin API?"
        )
    if not used:
        return warning("no Garage node reports its data disk", "check the nodes: garage status")
    name, percent = max(used, key=lambda found: found[1])
    said = f"fullest data disk: {printable(name, 64)} {percent:.0f}% used ({len(used)} node(s))"
    found = (
        warning(
            f"{said}: over {limit}% (DOCTOR_LIMITS disk-percent)",
            "free space or add capacity before Garage refuses writes: garage layout",
        )
        if percent > limit
        else ok(said)
    )
    return found.measured(round(percent, 1), limit, "percent")


def _garage_status(ctx: DoctorContext) -> tuple[Any, Any]:
    """GetClusterStatus and GetClusterLayout (BackendError when unreachable)."""
    from ..backends.garage import GarageAdmin

    s = ctx.settings
    api = GarageAdmin(s["GARAGE_ADMIN_URL"], s["GARAGE_ADMIN_TOKEN"], timeout=ctx.timeout)
    try:
        return api.get("GetClusterStatus"), api.get("GetClusterLayout")
    finally:
        api.close()


def _node_name(node: dict[str, Any]) -> str:
    from ..backends.garage import short

    host = printable(str(node.get("hostname") or "?"), 64)
    addr = printable(str(node.get("addr") or "?"), 64)
    return f"{short(str(node.get('id', '?')))} ({host}, {addr})"


def garage_nodes(ctx: DoctorContext) -> Finding:
    """Every node of the Garage layout is up (GetClusterStatus), and which ones are not."""
    from ..backends.plan import BackendError

    try:
        status, layout = _garage_status(ctx)
    except BackendError as exc:
        return error(str(exc), "check GARAGE_ADMIN_URL and GARAGE_ADMIN_TOKEN")
    nodes = status.get("nodes") if isinstance(status, dict) else None
    roles = layout.get("roles") if isinstance(layout, dict) else None
    if not isinstance(nodes, list) or not isinstance(roles, list):
        return error("Garage's cluster status is malformed", "is GARAGE_ADMIN_URL Garage v2?")
    in_layout = {str(r.get("id")) for r in roles if isinstance(r, dict)}
    members = [n for n in nodes if isinstance(n, dict) and str(n.get("id")) in in_layout]
    if not members:
        return warning("no Garage node holds a role in the layout yet", BOOTSTRAP)
    down = [n for n in members if n.get("isUp") is not True]
    if not down:
        return ok(f"all {len(members)} Garage node(s) of the layout are up")
    said = ", ".join(
        _node_name(n)
        + (
            f" last seen {n['lastSeenSecsAgo']} s ago"
            if isinstance(n.get("lastSeenSecsAgo"), int)
            else ""
        )
        for n in down
    )
    message = f"{len(down)} of {len(members)} Garage node(s) down: {said}"
    advice = "start it again (or replace it: garage layout); its blocks are read from the others"
    if ctx.settings["GARAGE_NODES"] and 2 * len(down) < len(members):
        return warning(message + "; a quorum of copies remains", advice)
    return error(message, advice)


def garage_replication(ctx: DoctorContext) -> Finding:
    """The copies Garage's layout keeps equal GARAGE_REPLICATION (garage.toml's factor)."""
    from ..backends.garage import REPLICATION_ADVICE, measured_replication, replication_problem
    from ..backends.plan import BackendError

    try:
        _, layout = _garage_status(ctx)
    except BackendError as exc:
        return error(str(exc), "check GARAGE_ADMIN_URL and GARAGE_ADMIN_TOKEN")
    measured = measured_replication(layout)
    expected = ctx.settings.integer("GARAGE_REPLICATION")
    if measured is None:
        return warning("no Garage layout is applied yet: replication unknown", BOOTSTRAP)
    problem = replication_problem(measured, expected)
    if problem:
        return error(problem, REPLICATION_ADVICE)
    return ok(f"Garage keeps {measured} copies of each block (GARAGE_REPLICATION)")


def checks(ctx: DoctorContext) -> list[Check]:
    """Postgres, Redis (and its sentinels), Garage (and, with its admin API, its nodes)."""
    s = ctx.settings
    sentinel = (
        [
            Check("backends.redis.sentinels", GROUP, "Redis sentinels", redis_sentinels),
            Check("backends.redis.master", GROUP, "Redis master", redis_master),
        ]
        if s["STALWART_REDIS_SENTINELS"]
        else []
    )
    admin = (
        [
            Check("backends.garage.disk", GROUP, "Garage data disks", garage_disk),
            Check("backends.garage.nodes", GROUP, "Garage nodes", garage_nodes),
        ]
        if s["GARAGE_ADMIN_TOKEN"] and s["GARAGE_ADMIN_URL"]
        else []
    )
    if admin and s["GARAGE_NODES"]:
        admin.append(
            Check("backends.garage.replication", GROUP, "Garage replication", garage_replication)
        )
    return [
        Check("backends.postgres.login", GROUP, "Postgres SCRAM login", postgres_login),
        Check("backends.postgres.trust", GROUP, "Postgres wrong-password probe", postgres_trust),
        Check("backends.postgres.database", GROUP, "Postgres database", postgres_database),
        Check("backends.postgres.primary", GROUP, "Postgres primary", postgres_primary),
        Check("backends.redis.auth", GROUP, "Redis", redis_auth),
        Check("backends.redis.db", GROUP, "Redis DB index", redis_db),
        *sentinel,
        Check("backends.garage.probe", GROUP, "Garage S3", garage_probe),
        Check("backends.garage.region", GROUP, "Garage S3 region", garage_region),
        *admin,
    ]
