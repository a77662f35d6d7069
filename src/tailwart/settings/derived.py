"""Variables derived from the keys, and the environment handed to docker compose."""

from __future__ import annotations

from .contract import DERIVED, SIDECAR_DERIVED
from .load import Settings


def derived_values(settings: Settings) -> dict[str, str]:
    """Values of every name in ``contract.DERIVED``."""
    values = {
        "STALWART_PUBLIC_URL": f"https://{settings['MAIL_HOSTNAME']}",
        "STALWART_RECOVERY_MODE": "",
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
