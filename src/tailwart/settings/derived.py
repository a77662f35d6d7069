"""Variables derived from the keys, and the environment handed to docker compose."""

from __future__ import annotations

from .contract import DERIVED
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
    return env
