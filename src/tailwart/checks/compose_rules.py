"""``inv check`` rules for compose/docker-compose.yml: the mailbox must not start broken.

The rules read the loader's normalised document (``docker compose config``) when
``inv check`` was given one, otherwise the raw YAML interpolated here with the same
environment ``inv up`` hands to compose. Values are compared, never printed: the
interpolated document holds secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..findings import Finding
from ..settings import Settings
from ..settings.contract import CONTAINER_SOURCE, STALWART_ENV
from ..settings.derived import compose_environment
from . import COMPOSE_FILE, CONFIG_FILE, CheckContext
from .registry import declared

if TYPE_CHECKING:
    from .compose_loader import Loaded

GROUP = "compose"
#: every id of this module, in report order: the file is loaded and normalised once and
#: its services judged together (``run``); the first three stop it when they fail
RULES = declared(
    GROUP,
    """
    compose.file                 compose/docker-compose.yml is there
    compose.yaml                 the file is YAML, a mapping
    compose.loader               a compose loader validated and normalised the file
    compose.services             both services are there: ts-stalwart and stalwart
    compose.stalwart-ports       no host ports on the mailbox (neither service publishes one)
    compose.stalwart-networks    stalwart has no networks of its own
    compose.network-mode         stalwart runs in the sidecar's network namespace, once healthy
    compose.sidecar-boilerplate  the sidecar's TS_* settings are the boilerplate
    compose.sidecar-health       the sidecar's healthcheck is exec form (backends as arguments)
    compose.sidecar-oauth        the sidecar's auth key is an OAuth client secret
    compose.env-passed           what Stalwart's config and the contract need reaches it
    compose.stalwart-health      stalwart's healthcheck asks /healthz/ready
    compose.volumes              /etc/stalwart and /var/lib/stalwart mounted, config.json read-only
    compose.tls-files            STALWART_TLS=files mounts the PEM files (else /dev/null stands in)
    compose.image-pinned         the stalwart image is pinned to a known version
    compose.sidecar-image        the sidecar image is pinned
    """,
)
SIDECAR = "ts-stalwart"
STALWART = "stalwart"
#: the v0.16 image's volumes: settings directory and data (WORKDIR)
ETC_TARGET = "/etc/stalwart"
DATA_TARGET = "/var/lib/stalwart"
CONFIG_TARGET = "/etc/stalwart/config.json"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OP = re.compile(r":?[-?+]")


# ---------------------------------------------------------------- interpolation (raw YAML)


class InterpolationError(ValueError):
    """Compose would refuse the file: a required variable without a value, a bad ``${…}``."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string (``${X}``, ``${X:-d}``, ``${X:?m}``, ``$$``…),
    with variables nested in a default or replacement (``${X:+ --flag=${X}}``).

    The fallback when no compose loader is installed; ``test_compose_loader`` compares it
    with the real loader case by case. InterpolationError where compose refuses the text.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] != "$":
            out.append(value[i])
            i += 1
            continue
        nxt = value[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(value, i + 2)
            if end < 0:
                raise InterpolationError(f"invalid interpolation format: {value[i:]!r}")
            out.append(_substitute(value[i + 2 : end], env))
            i = end + 1
        elif (bare := _NAME.match(value, i + 1)) is not None:
            out.append(env.get(bare.group(), ""))
            i = bare.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(value: str, start: int) -> int:
    """Index of the ``}`` closing a ``${`` opened just before ``start`` (-1: none)."""
    depth, i = 1, start
    while i < len(value):
        if value.startswith("$$", i):
            i += 2
            continue
        if value.startswith("${", i):
            depth += 1
            i += 2
            continue
        if value[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _substitute(body: str, env: Mapping[str, str]) -> str:
    """One ``${…}`` body: a name, then optionally an operator and its argument (interpolated
    first, as compose does, even where the operator will not use it)."""
    name = _NAME.match(body)
    op_match = _OP.match(body, name.end()) if name is not None else None
    if name is None or (op_match is None and name.end() != len(body)):
        raise InterpolationError(f"invalid interpolation format: {'${' + body + '}'!r}")
    op = op_match.group() if op_match else ""
    arg = interpolate(body[op_match.end() :], env) if op_match else ""
    present = name.group() in env
    current = env.get(name.group(), "")
    if op in (":?", "?") and not (current if op == ":?" else present):
        raise InterpolationError(
            f"required variable {name.group()} is missing a value" + (f": {arg}" if arg else "")
        )
    if op == ":-":
        return current if current else arg
    if op == "-":
        return current if present else arg
    if op == ":+":
        return arg if current else ""
    if op == "+":
        return arg if present else ""
    return current


def config_macros(ctx: CheckContext) -> set[str]:
    """Variables config.json and the provisioned objects reference by name."""
    from .envcontract import stalwart_references

    return stalwart_references(ctx)


def interpolate_tree(node: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Every string value of a YAML tree interpolated (keys are not); InterpolationError
    naming where, like compose's "error while interpolating services.x.y"."""
    if isinstance(node, str):
        try:
            return interpolate(node, env)
        except InterpolationError as exc:
            raise InterpolationError(f"error while interpolating {where}: {exc}") from None
    if isinstance(node, list):
        return [interpolate_tree(item, env, f"{where}[{n}]") for n, item in enumerate(node)]
    if isinstance(node, dict):
        return {
            key: interpolate_tree(value, env, f"{where}.{key}" if where else str(key))
            for key, value in node.items()
        }
    return node


# ---------------------------------------------------------------- shape helpers (raw or normalised)


def environment_of(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment as a dict, from the mapping or the ``KEY=value`` list form."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): None if v is None else str(v) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def _volume_mounts(service: Mapping[str, Any], compose_dir: Path) -> list[dict[str, Any]]:
    """Volumes as {type, source, target, read_only}, from short or long syntax."""
    mounts = []
    for item in service.get("volumes") or ():
        if isinstance(item, dict):
            mounts.append(
                {
                    "type": item.get("type", "volume"),
                    "source": str(item.get("source", "")),
                    "target": str(item.get("target", "")),
                    "read_only": bool(item.get("read_only", False)),
                }
            )
            continue
        parts = str(item).split(":")
        source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        mode = parts[2] if len(parts) > 2 else ""
        bind = source.startswith((".", "/", "~"))
        mounts.append(
            {
                "type": "bind" if bind else "volume",
                "source": str((compose_dir / source).resolve()) if bind else source,
                "target": target,
                "read_only": "ro" in mode.split(","),
            }
        )
    return mounts


def _devices(service: Mapping[str, Any]) -> list[str]:
    out = []
    for item in service.get("devices") or ():
        if isinstance(item, dict):
            out.append(f"{item.get('source', '')}:{item.get('target', '')}")
        else:
            out.append(str(item).rsplit(":", 1)[0] if str(item).count(":") > 1 else str(item))
    return out


def _health_test(service: Mapping[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or ""
    return " ".join(str(t) for t in test) if isinstance(test, list) else str(test)


def image_version(image: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of an image's tag, or None for latest / no tag / a non-version tag."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?", tag)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


# ---------------------------------------------------------------- the rules


def run(ctx: CheckContext) -> list[Finding]:
    """Every compose finding; a file that cannot be read is one error and stops here."""
    text = ctx.text(COMPOSE_FILE)
    if text is None:
        return [
            Finding.error(
                "compose.file",
                f"{COMPOSE_FILE} is missing",
                "restore it from git: `git checkout -- compose/`",
                GROUP,
            )
        ]
    findings: list[Finding] = []
    raw: dict[str, Any] | None = None
    try:
        import yaml

        loaded = yaml.safe_load(text)
        raw = loaded if isinstance(loaded, dict) else None
        if raw is None:
            findings.append(
                Finding.error(
                    "compose.yaml", f"{COMPOSE_FILE} is not a mapping", "restore it from git", GROUP
                )
            )
    except Exception as exc:  # yaml.YAMLError and friends
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        findings.append(
            Finding.error(
                "compose.yaml",
                f"{COMPOSE_FILE}: broken YAML{at}: {problem}",
                "fix the YAML syntax (or `git diff compose/`)",
                GROUP,
            )
        )

    env = compose_environment(ctx.settings)
    loaded = ctx.compose_loaded
    if loaded is None:  # a context not made by checks.run.context_for: load here
        from .compose_loader import try_load

        loaded = try_load(ctx.settings, ctx.root)
    if raw is None:
        return [*findings, _loader_finding(loaded)]
    doc = loaded.document
    if doc is None:
        try:
            doc = interpolate_tree(raw, env)
        except InterpolationError as exc:
            findings.append(_loader_finding(loaded, str(exc)))
            return findings
    findings.append(_loader_finding(loaded))
    services = doc.get("services") or {}
    compose_dir = ctx.path(COMPOSE_FILE).parent
    stalwart, sidecar = services.get(STALWART), services.get(SIDECAR)
    if not isinstance(stalwart, dict) or not isinstance(sidecar, dict):
        missing = [s for s in (SIDECAR, STALWART) if not isinstance(services.get(s), dict)]
        findings.append(
            Finding.error(
                "compose.services",
                f"service(s) missing: {', '.join(missing)}",
                "restore compose/ from git",
                GROUP,
            )
        )
        return findings
    findings += _ports(stalwart, sidecar)
    findings += _networks(stalwart)
    findings += _network_mode(stalwart)
    findings += _sidecar(sidecar, ctx.settings)
    raw_sidecar = (raw.get("services") or {}).get(SIDECAR)
    findings += _sidecar_health_form(raw_sidecar if isinstance(raw_sidecar, dict) else {}, sidecar)
    findings += _oauth_secret(ctx.settings)
    findings += _env_passed(stalwart, env, ctx)
    findings += _health(stalwart)
    findings += _volumes(stalwart, doc, compose_dir, ctx.path(CONFIG_FILE))
    findings += _tls_mounts(stalwart, compose_dir, ctx.settings)
    findings += _image(stalwart, sidecar)
    return findings


def _loader_finding(loaded: Loaded, fallback_error: str = "") -> Finding:
    """Which loader read the file (the operator's ``docker compose``, the built one, or
    tailwart's fallback interpolation), and its error when it refused the file."""
    from .compose_loader import cached_loader_path

    loader = loaded.loader
    if loaded.document is not None and loader is not None:
        return Finding.ok("compose.loader", f"validated and normalised by {loader.name}", GROUP)
    fallback = "checked the raw YAML with tailwart's own interpolation"
    if loaded.rejected and loader is not None:
        return Finding.error(
            "compose.loader",
            f"{loader.name} rejects the file: {loaded.rejected}",
            "fix compose/docker-compose.yml where the loader points",
            GROUP,
        )
    if fallback_error:
        return Finding.error(
            "compose.loader",
            f"{fallback_error} ({fallback})",
            "fix compose/docker-compose.yml or the .env value it names",
            GROUP,
        )
    if loaded.failed and loader is not None:
        return Finding.warning(
            "compose.loader",
            f"{loader.name} failed to run ({loaded.failed}): {fallback}",
            "check `docker compose version`, or re-run scripts/setup/50-mailbox.sh",
            GROUP,
        )
    return Finding.warning(
        "compose.loader",
        f"no compose loader (`docker compose` on PATH, or {cached_loader_path()}): {fallback}",
        "install Docker Compose v2 (the docker-compose-plugin package), or run "
        "scripts/setup/50-mailbox.sh",
        GROUP,
    )


def _ports(stalwart: Mapping[str, Any], sidecar: Mapping[str, Any]) -> list[Finding]:
    bad = [name for name, svc in ((STALWART, stalwart), (SIDECAR, sidecar)) if svc.get("ports")]
    if bad:
        return [
            Finding.error(
                "compose.stalwart-ports",
                f"host ports published by {', '.join(bad)}",
                "remove ports: the edge reaches Stalwart over the tailnet; it is the only public "
                "surface",
                GROUP,
            )
        ]
    return [Finding.ok("compose.stalwart-ports", "no host ports on the mailbox", GROUP)]


def _networks(stalwart: Mapping[str, Any]) -> list[Finding]:
    if stalwart.get("networks"):
        return [
            Finding.error(
                "compose.stalwart-networks",
                "stalwart declares networks of its own",
                "remove networks: from stalwart; the sidecar's namespace is its only network",
                GROUP,
            )
        ]
    return [Finding.ok("compose.stalwart-networks", "stalwart has no networks of its own", GROUP)]


def _network_mode(stalwart: Mapping[str, Any]) -> list[Finding]:
    mode = stalwart.get("network_mode")
    if mode != f"service:{SIDECAR}":
        return [
            Finding.error(
                "compose.network-mode",
                f"stalwart network_mode is {mode!r}",
                f"set network_mode: service:{SIDECAR} (Stalwart lives in the sidecar's namespace)",
                GROUP,
            )
        ]
    deps = stalwart.get("depends_on") or {}
    condition = deps.get(SIDECAR, {}).get("condition") if isinstance(deps, dict) else None
    if condition != "service_healthy":
        return [
            Finding.error(
                "compose.network-mode",
                "stalwart does not wait for a healthy sidecar",
                f"add depends_on: {{{SIDECAR}: {{condition: service_healthy}}}} (first boot needs "
                "Postgres and Garage)",
                GROUP,
            )
        ]
    return [
        Finding.ok(
            "compose.network-mode",
            f"stalwart runs in {SIDECAR}'s network namespace once it is healthy",
            GROUP,
        )
    ]


def _sidecar(sidecar: Mapping[str, Any], settings: Settings) -> list[Finding]:
    env = environment_of(sidecar)
    tag = settings["MAILBOX_TAG"]
    login = settings["TS_LOGIN_SERVER"]
    want = {
        # headscale tags the node from its pre-auth key and refuses --advertise-tags with one
        "TS_EXTRA_ARGS": f"--login-server={login}" if login else f"--advertise-tags={tag}",
        "TS_HOSTNAME": settings["MAILBOX_NODE_NAME"],
        "TS_ACCEPT_DNS": "true",
        "TS_AUTH_ONCE": "true",
        "TS_USERSPACE": "false",
        "TS_ENABLE_HEALTH_CHECK": "true",
        "TS_LOCAL_ADDR_PORT": "127.0.0.1:9002",
    }
    drift = [f"{k}={env.get(k)!r} (want {v!r})" for k, v in want.items() if env.get(k) != v]
    authkey = env.get("TS_AUTHKEY") or ""
    secret = settings["TS_OAUTH_CLIENT_SECRET"]
    attrs = "" if login else "?ephemeral=true"  # headscale: ephemeral is the key's own property
    if not authkey.endswith(attrs) or (secret and authkey != secret + attrs):
        drift.append(f"TS_AUTHKEY (want ${{TS_OAUTH_CLIENT_SECRET}}{attrs})")
    if "TS_STATE_DIR" in env:
        drift.append("TS_STATE_DIR set (the boilerplate keeps state in memory)")
    if "/dev/net/tun:/dev/net/tun" not in _devices(sidecar):
        drift.append("devices lacks /dev/net/tun")
    caps = {str(c).upper().removeprefix("CAP_") for c in sidecar.get("cap_add") or ()}
    drift += [f"cap_add lacks {cap}" for cap in ("NET_ADMIN", "NET_RAW") if cap not in caps]
    if sidecar.get("init") is not True:
        drift.append("init is not true (containerboot does not reap health-check children)")
    if not sidecar.get("dns"):
        drift.append("no bootstrap dns:")
    if "127.0.0.1:9002/healthz" not in _health_test(sidecar):
        drift.append("healthcheck does not ask 127.0.0.1:9002/healthz")
    if drift:
        return [
            Finding.error(
                "compose.sidecar-boilerplate",
                "the sidecar drifts from the fixed boilerplate: " + "; ".join(drift),
                "restore the ts-stalwart block from git (shared with the tailnet's other apps)",
                GROUP,
            )
        ]
    return [
        Finding.ok(
            "compose.sidecar-boilerplate",
            "sidecar matches the fixed boilerplate "
            f"(ephemeral, kernel networking, MagicDNS, {tag})",
            GROUP,
        )
    ]


#: the backends the sidecar's healthcheck must reach, as (host key, port key)
HEALTH_BACKENDS = (
    ("STALWART_DB_HOST", "STALWART_DB_PORT"),
    ("STALWART_S3_HOST", "STALWART_S3_PORT"),
)
_INTERPOLATION = re.compile(r"\$(?!\$)(?:\{|[A-Za-z_])")


def _sidecar_health_form(raw: Mapping[str, Any], sidecar: Mapping[str, Any]) -> list[Finding]:
    """The sidecar's healthcheck runs as root every 10 s: exec form, values only as arguments.

    ``raw`` is the sidecar as written (before interpolation), ``sidecar`` as compose
    resolves it. A ``CMD-SHELL`` string, or a script with ``${VAR}`` in its text, would
    let a host value become shell code; the backends must arrive as whole arguments.
    """
    problems = []
    raw_test = (raw.get("healthcheck") or {}).get("test")
    test = (sidecar.get("healthcheck") or {}).get("test")
    if not isinstance(raw_test, list) or not raw_test or raw_test[0] != "CMD":
        problems.append("healthcheck is not exec form (test: [CMD, ...])")
    else:
        words = [str(w) for w in raw_test]
        scripts = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-c"]
        if any(_INTERPOLATION.search(script) for script in scripts):
            problems.append("the healthcheck script interpolates a value into shell text")
    if isinstance(test, list):
        raw_words = [str(w) for w in raw_test] if isinstance(raw_test, list) else []
        for host, port in HEALTH_BACKENDS:
            for key in (host, port):
                if not any(w.startswith("${" + key) and w.endswith("}") for w in raw_words):
                    problems.append(f"{key} is not passed to the healthcheck as a whole argument")
    if problems:
        return [
            Finding.error(
                "compose.sidecar-health",
                "the sidecar healthcheck (root, every 10 s): " + "; ".join(problems),
                "restore the exec-form ts-stalwart healthcheck from git (values as arguments)",
                GROUP,
            )
        ]
    return [
        Finding.ok(
            "compose.sidecar-health",
            "sidecar healthcheck is exec form: Postgres and Garage hosts/ports are arguments",
            GROUP,
        )
    ]


OAUTH_ADVICE = (
    "create a Tailscale OAuth client with Devices → Core, Keys → Auth Keys and Keys → OAuth "
    "Keys (read+write) that may assign {tag}, and put its tskey-client-… secret here"
)


def _oauth_secret(settings: Settings) -> list[Finding]:
    """The boilerplate's TS_AUTHKEY only works with an OAuth client secret."""
    secret, tag = settings["TS_OAUTH_CLIENT_SECRET"], settings["MAILBOX_TAG"]
    if settings["TS_LOGIN_SERVER"]:
        return _headscale_key(secret, settings["TS_LOGIN_SERVER"])
    if secret.startswith("tskey-client-"):
        return [
            Finding.ok(
                "compose.sidecar-oauth",
                f"the sidecar joins with an OAuth client secret (ephemeral, tagged {tag})",
                GROUP,
            )
        ]
    kind = secret.split("-")[1] if secret.startswith("tskey-") and secret.count("-") > 1 else ""
    if kind:
        return [
            Finding.error(
                "compose.sidecar-oauth",
                f"TS_OAUTH_CLIENT_SECRET is a tskey-{kind}-… key, not an "
                "OAuth client secret: tailscale up would take '<key>?ephemeral=true' literally and "
                "the sidecar would never join",
                OAUTH_ADVICE.format(tag=tag),
                GROUP,
            )
        ]
    return [
        Finding.warning(
            "compose.sidecar-oauth",
            "TS_OAUTH_CLIENT_SECRET does not look like an OAuth client "
            "secret (tskey-client-…): only those honour ?ephemeral=true and --advertise-tags",
            OAUTH_ADVICE.format(tag=tag),
            GROUP,
        )
    ]


def _headscale_key(secret: str, login: str) -> list[Finding]:
    """With TS_LOGIN_SERVER the sidecar takes a headscale pre-auth key as it is."""
    if secret.startswith("tskey-"):
        return [
            Finding.error(
                "compose.sidecar-oauth",
                f"TS_LOGIN_SERVER is set ({login}) but TS_OAUTH_CLIENT_SECRET is a Tailscale "
                "key: headscale would refuse it and the sidecar would never join",
                "create an ephemeral pre-auth key tagged with the mailbox tag on the headscale "
                "server (`headscale preauthkeys create --ephemeral --tags tag:stalwart …`) and put "
                "it here, or empty TS_LOGIN_SERVER to use Tailscale",
                GROUP,
            )
        ]
    return [
        Finding.ok(
            "compose.sidecar-oauth",
            f"the sidecar logs in to {login} with a headscale pre-auth key",
            GROUP,
        )
    ]


def _env_passed(
    stalwart: Mapping[str, Any], env: Mapping[str, str], ctx: CheckContext
) -> list[Finding]:
    given = environment_of(stalwart)
    macros = config_macros(ctx)
    needed = sorted(set(STALWART_ENV) | macros)
    missing = [name for name in needed if name not in given]
    source = {name: CONTAINER_SOURCE.get(name, name) for name in needed}
    wrong = [
        name
        for name in needed
        if name in given and source[name] in env and (given[name] or "") != env[source[name]]
    ]
    undeclared = sorted(macros - set(env))
    problems = []
    if missing:
        problems.append(f"not passed to stalwart: {', '.join(missing)}")
    if wrong:
        problems.append(f"passed with another value than .env gives: {', '.join(wrong)}")
    if undeclared:
        problems.append(
            f"Stalwart references variables tailwart does not supply: {', '.join(undeclared)}"
        )
    if problems:
        return [
            Finding.error(
                "compose.env-passed",
                "; ".join(problems) + " (Stalwart would find no value)",
                "pass each as `NAME: ${NAME}` under stalwart.environment",
                GROUP,
            )
        ]
    return [
        Finding.ok(
            "compose.env-passed",
            f"all {len(needed)} variables Stalwart's config and the contract need reach stalwart",
            GROUP,
        )
    ]


def _health(stalwart: Mapping[str, Any]) -> list[Finding]:
    if "/healthz/ready" not in _health_test(stalwart):
        return [
            Finding.error(
                "compose.stalwart-health",
                "stalwart's healthcheck does not ask /healthz/ready",
                "restore the curl probe of /healthz/ready (inv up waits on it)",
                GROUP,
            )
        ]
    return [
        Finding.ok("compose.stalwart-health", "stalwart's healthcheck asks /healthz/ready", GROUP)
    ]


def _volumes(
    stalwart: Mapping[str, Any], doc: Mapping[str, Any], compose_dir: Path, config_path: Path
) -> list[Finding]:
    mounts = _volume_mounts(stalwart, compose_dir)
    declared = set((doc.get("volumes") or {}).keys())
    problems = []
    for target in (ETC_TARGET, DATA_TARGET):
        found = [m for m in mounts if PurePosixPath(m["target"]) == PurePosixPath(target)]
        if not found or found[0]["type"] != "volume":
            problems.append(f"no named volume at {target} (it would die with the container)")
        elif found[0]["source"] not in declared:
            problems.append(f"volume {found[0]['source']!r} is not declared under volumes:")
    conf = [m for m in mounts if m["target"] == CONFIG_TARGET]
    if not conf:
        problems.append(f"config/config.json is not mounted at {CONFIG_TARGET}")
    else:
        if Path(conf[0]["source"]).resolve() != config_path.resolve():
            problems.append(
                f"{CONFIG_TARGET} comes from {conf[0]['source']}, not config/config.json"
            )
        if not conf[0]["read_only"]:
            problems.append(
                "config.json is mounted writable (x:DataStore/set would rewrite it behind .env)"
            )
    if problems:
        return [
            Finding.error(
                "compose.volumes", "; ".join(problems), "restore stalwart.volumes from git", GROUP
            )
        ]
    return [
        Finding.ok(
            "compose.volumes",
            f"volumes at {ETC_TARGET} and {DATA_TARGET}, config.json read-only",
            GROUP,
        )
    ]


#: what stands in for STALWART_TLS=files' PEM files in the other modes
NO_TLS_FILE = "/dev/null"


def _tls_mounts(
    stalwart: Mapping[str, Any], compose_dir: Path, settings: Settings
) -> list[Finding]:
    """STALWART_TLS=files' PEM files: bind-mounted read-only where its x:Certificate reads
    them, from the paths .env names; /dev/null there in the other modes."""
    from ..settings.derived import TLS_FILE_KEYS
    from ..stalwart.desired import TLS_CERT_PATH, TLS_KEY_PATH

    mode = settings["STALWART_TLS"] or "acme-http"
    mounts = _volume_mounts(stalwart, compose_dir)
    problems = []
    for target, key in zip((TLS_CERT_PATH, TLS_KEY_PATH), TLS_FILE_KEYS, strict=True):
        found = [m for m in mounts if PurePosixPath(m["target"]) == PurePosixPath(target)]
        want = settings[key] if mode == "files" else NO_TLS_FILE
        if not found:
            problems.append(f"nothing is mounted at {target} (it stands for {key})")
        elif found[0]["type"] != "bind" or not found[0]["read_only"]:
            problems.append(f"{target} is not a read-only bind mount")
        elif PurePosixPath(found[0]["source"]) != PurePosixPath(want):
            problems.append(
                f"{target} comes from {found[0]['source']}, not "
                + (f"{key} ({want})" if mode == "files" else f"{want} (STALWART_TLS={mode})")
            )
    if problems:
        return [
            Finding.error(
                "compose.tls-files",
                "; ".join(problems),
                "restore the two TLS bind mounts under stalwart.volumes from git "
                "(source: ${STALWART_TLS_CERT_FILE:-/dev/null}, read_only: true)",
                GROUP,
            )
        ]
    if mode == "files":
        message = f"{TLS_FILE_KEYS[0]} and {TLS_FILE_KEYS[1]} mounted read-only at " + (
            f"{TLS_CERT_PATH} and {TLS_KEY_PATH}"
        )
    else:
        message = f"STALWART_TLS={mode}: no PEM files mounted ({NO_TLS_FILE} stands in)"
    return [Finding.ok("compose.tls-files", message, GROUP)]


def _image(stalwart: Mapping[str, Any], sidecar: Mapping[str, Any]) -> Iterator[Finding]:
    from ..stalwart.versions import PINNED_IMAGE, advisory, refusal

    image = str(stalwart.get("image") or "")
    version = image_version(image)
    fmt = ".".join(map(str, version)) if version else ""
    if version is None and "@sha256:" in image:
        yield Finding.warning(
            "compose.image-pinned",
            f"stalwart image {image} is pinned by digest only: tailwart cannot tell its "
            "version (inv provision still refuses an unknown object schema)",
            f"use a version tag, e.g. {PINNED_IMAGE}",
            GROUP,
        )
    elif version is None:
        yield Finding.error(
            "compose.image-pinned",
            f"stalwart image {image or '(none)'} is not pinned to a version: a floating tag "
            "moves to releases whose store and schema tailwart does not know (0.15 → 0.16 broke "
            "every TOML mailbox; 1.x cannot open a 0.16 store)",
            f"set STALWART_IMAGE={PINNED_IMAGE}",
            GROUP,
        )
    elif (why := refusal(version)) is not None:
        yield Finding.error("compose.image-pinned", why, f"pin {PINNED_IMAGE}", GROUP)
    elif (note := advisory(version)) is not None:
        yield Finding.warning("compose.image-pinned", note, f"pin {PINNED_IMAGE}", GROUP)
    else:
        yield Finding.ok(
            "compose.image-pinned",
            f"stalwart {fmt}, the version tailwart's model is verified on",
            GROUP,
        )
    ts_image = str(sidecar.get("image") or "")
    if image_version(ts_image) is None and "@sha256:" not in ts_image:
        yield Finding.warning(
            "compose.sidecar-image",
            f"sidecar image {ts_image or '(none)'} is not pinned",
            "set TS_IMAGE to a version tag (e.g. tailscale/tailscale:v1.90.6)",
            GROUP,
        )
