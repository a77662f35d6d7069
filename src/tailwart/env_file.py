"""The operator's .env, loaded for one task: warnings to stderr, secrets remembered.

Every task that reads ``.env`` goes through ``load_settings``: the settings come back
validated, their warnings are printed once, and their secret values are masked in
every message the process prints afterwards (``tailwart.masking``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Set
from pathlib import Path

from .settings import Settings


def load_settings(
    env_file: str,
    strict: bool = False,
    example: bool = False,
    *,
    flag: str = "",
    only: Set[str] | None = None,
    require: Iterable[str] = (),
) -> Settings:
    """Validated settings of ``env_file`` (or the built-in example); warnings to stderr.

    A second env file (``flag``, e.g. ``--target-env``) goes through the same reader:
    size cap, file type, UTF-8, mode warning, and its secrets masked from then on;
    ``only``/``require`` as in ``settings.load``.
    """
    if example:
        from .settings.example import example_settings

        return example_settings()
    from .masking import remember_secrets
    from .settings import load

    source = f"{env_file} ({flag})" if flag else ""
    settings = load(Path(env_file), strict=strict, source=source, only=only, require=require)
    remember_secrets(settings)
    for warning in settings.warnings:
        print(str(warning), file=sys.stderr)
    return settings
