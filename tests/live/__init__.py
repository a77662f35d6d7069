"""Acceptance against a real Stalwart binary (``nox -s live``)."""
