"""Variables derived from the keys, and the environment handed to docker compose."""

from __future__ import annotations

from .contract import DERIVED, SIDECAR_DERIVED
from .load import Settings


def derived_values(settings: Settings) -> dict[str, str]:
    """Values of every name in ``contract.DERIVED``."""
    relay = settings.hostport("STALWART_SMARTHOST")
    values = {
        "STALWART_OUTBOUND_ROUTE": "smarthost" if relay else "mx",
        # an unused relay route still needs a syntactically valid next hop
        "STALWART_RELAY_HOST": relay.host if relay else "localhost",
        "STALWART_RELAY_PORT": str(relay.port) if relay else "25",
        "STALWART_RELAY_IMPLICIT_TLS": str(
            settings["STALWART_SMARTHOST_TLS"] == "implicit"
        ).lower(),
    }
    assert set(values) == set(DERIVED)
    return values


def compose_environment(settings: Settings) -> dict[str, str]:
    """Everything compose interpolates: declared keys (defaults applied) plus derived values."""
    env = {name: value for name, value in settings.values.items()}
    env.update(derived_values(settings))
    env.update(sidecar_values(settings))
    return env


def sidecar_values(settings: Settings) -> dict[str, str]:
    """The sidecar's login. For Tailscale nothing: the compose file's own boilerplate values
    stand (``?ephemeral=true`` after the OAuth client secret, ``--advertise-tags``). With a
    headscale TS_LOGIN_SERVER both are emptied: headscale reads the whole TS_AUTHKEY as its
    pre-auth key, takes the tags (and ephemerality) from that key, and refuses
    --advertise-tags with a pre-auth key."""
    if not settings["TS_LOGIN_SERVER"]:
        return {}
    return dict.fromkeys(SIDECAR_DERIVED, "")
