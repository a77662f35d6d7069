"""The .env contract: declaration, loading, validation and generated text."""

from .contract import BY_NAME, KEYS, STALWART_ENV, Key
from .kinds import HostPort, Kind
from .load import Problem, Settings, SettingsError, from_mapping, load, mask_value, validate

__all__ = [
    "BY_NAME",
    "KEYS",
    "STALWART_ENV",
    "HostPort",
    "Key",
    "Kind",
    "Problem",
    "Settings",
    "SettingsError",
    "from_mapping",
    "load",
    "mask_value",
    "validate",
]
