"""Variables derived from the keys, and the environment handed to docker compose."""

from __future__ import annotations

from .contract import DERIVED, RECOVERY_DERIVED, SIDECAR_DERIVED, split_pair
from .load import Settings

#: where tailwart uploads config.json on a node reached over ssh:// (the compose file's
#: bind source there: the engine resolves bind mounts on its own host)
REMOTE_CONFIG_FILE = "/var/lib/tailwart/config.json"


def derived_values(settings: Settings, node: str = "", role: str = "") -> dict[str, str]:
    """Values of every name in ``contract.DERIVED``, for ``node`` (a MAILBOX_NODES entry;
    default MAILBOX_FQDN's node) running cluster role ``role`` (``stalwart.cluster.role_for``
    decides it; '' runs every task, as one node does)."""
    node = node or settings["MAILBOX_FQDN"]
    values = {
        "STALWART_PUBLIC_URL": f"https://{settings['MAIL_HOSTNAME']}",
        "STALWART_RECOVERY_MODE": "",
        "STALWART_HOSTNAME": node_name(settings, node),
        "STALWART_ROLE": role,
    }
    assert set(values) == set(DERIVED)
    return values


def compose_environment(settings: Settings, node: str = "", role: str = "") -> dict[str, str]:
    """Everything compose interpolates: declared keys (defaults applied) plus derived values,
    for ``node`` (a MAILBOX_NODES entry; default MAILBOX_FQDN's node) and its cluster
    ``role`` (the mailbox's ``Node`` knows it)."""
    node = node or settings["MAILBOX_FQDN"]
    env = {name: value for name, value in settings.values.items()}
    env.update(derived_values(settings, node, role))
    env.update(sidecar_values(settings))
    env.update(tls_file_values(settings))
    # the recovery admin reaches Stalwart only in recovery mode (ComposeControl sets it)
    env.update(dict.fromkeys(RECOVERY_DERIVED, ""))
    env["MAILBOX_NODE_NAME"] = node_name(settings, node)
    if docker_endpoint(settings, node).startswith("ssh://"):
        env["STALWART_CONFIG_FILE"] = REMOTE_CONFIG_FILE
    return env


def node_name(settings: Settings, node: str) -> str:
    """The name of mailbox node ``node``: MAILBOX_NODE_NAME for MAILBOX_FQDN's node, else the
    first label of its MagicDNS name (its sidecar's TS_HOSTNAME and its STALWART_HOSTNAME)."""
    if node.lower() == settings["MAILBOX_FQDN"].lower():
        return settings["MAILBOX_NODE_NAME"]
    return node.split(".", 1)[0]


def docker_endpoint(settings: Settings, node: str) -> str:
    """The docker endpoint (DOCKER_HOST) of ``node`` from MAILBOX_DOCKER_HOSTS, in
    MAILBOX_NODES' order; '' when the key is empty (the local engine)."""
    endpoints = [e for e in settings["MAILBOX_DOCKER_HOSTS"].split(",") if e]
    if not endpoints:
        return ""
    nodes = [n.lower() for n in mailbox_nodes(settings)]
    return endpoints[nodes.index(node.lower())]


def recovery_values(settings: Settings) -> dict[str, str]:
    """What a recovery-mode start adds to the compose environment: the recovery admin."""
    name, password = split_pair(settings["STALWART_RECOVERY_ADMIN"])
    return {
        "STALWART_RECOVERY_MODE": "1",
        # always name:password, the form Stalwart reads
        "STALWART_RECOVERY_ADMIN_IN_RECOVERY": f"{name}:{password}",
    }


#: the keys naming STALWART_TLS=files' PEM files, mounted into the container
TLS_FILE_KEYS = ("STALWART_TLS_CERT_FILE", "STALWART_TLS_KEY_FILE")


def tls_file_values(settings: Settings) -> dict[str, str]:
    """Outside STALWART_TLS=files both PEM paths are emptied, so the compose file mounts
    /dev/null in their place: a key left in .env by another mode is never mounted."""
    if (settings["STALWART_TLS"] or "acme-http") == "files":
        return {}
    return dict.fromkeys(TLS_FILE_KEYS, "")


def sidecar_values(settings: Settings) -> dict[str, str]:
    """The sidecar's login. For Tailscale nothing: the compose file's own boilerplate values
    stand (``?ephemeral=true`` after the OAuth client secret, ``--advertise-tags``). With a
    headscale TS_LOGIN_SERVER both are emptied: headscale reads the whole TS_AUTHKEY as its
    pre-auth key, takes the tags (and ephemerality) from that key, and refuses
    --advertise-tags with a pre-auth key."""
    if not settings["TS_LOGIN_SERVER"]:
        return {}
    return dict.fromkeys(SIDECAR_DERIVED, "")


def mailbox_nodes(settings: Settings) -> list[str]:
    """Every mailbox node's MagicDNS name, as MAILBOX_NODES lists them; MAILBOX_FQDN alone
    when it is empty. MAILBOX_FQDN (the node provision and first-start talk to) is always
    among them (the contract checks it)."""
    first = settings["MAILBOX_FQDN"]
    listed = [n for n in settings["MAILBOX_NODES"].split(",") if n]
    # MAILBOX_FQDN's own spelling, however MAILBOX_NODES writes it: one node renders as today
    return [first if n.lower() == first.lower() else n for n in listed] or [first]


def certificate_names(settings: Settings) -> list[str]:
    """The names the certificate must cover: MAIL_HOSTNAME, then MAIL_HOSTNAME_ALIASES."""
    aliases = [a for a in settings["MAIL_HOSTNAME_ALIASES"].split(",") if a]
    return [settings["MAIL_HOSTNAME"], *aliases]
