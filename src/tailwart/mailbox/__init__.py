"""The mailbox: Stalwart inside the ts-stalwart sidecar's network namespace, run by compose.

``compose`` builds the exact docker command lines, ``preconditions`` proves docker is
usable, ``health`` judges ``docker compose ps`` / ``docker inspect`` output, ``stack``
holds the up / down / ps / logs / restart operations. The compose loader that
``inv check`` and ``inv up`` validate the file with lives in ``checks.compose_loader``.
"""
