"""The operator's .env, loaded for one task: warnings to stderr, secrets remembered.

Every task that reads ``.env`` goes through ``load_settings``: the settings come back
validated, their warnings are printed once, and their secret values are masked in
every message the process prints afterwards (``tailwart.masking``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .settings import Settings


def load_settings(env_file: str, strict: bool = False, example: bool = False) -> Settings:
    """Validated settings of ``env_file`` (or the built-in example); warnings to stderr."""
    if example:
        from .settings.example import example_settings

        return example_settings()
    from .masking import remember_secrets
    from .settings import load

    settings = load(Path(env_file), strict=strict)
    remember_secrets(settings)
    for warning in settings.warnings:
        print(str(warning), file=sys.stderr)
    return settings
