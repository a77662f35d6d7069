"""A self-hosted headscale behind a private CA: the policy client takes the CA bundle from
REQUESTS_CA_BUNDLE although it ignores the rest of the environment (.netrc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailwart.policy.http import Transport


def test_a_ca_bundle_from_the_environment_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = Transport()._session()
    assert session.verify == str(bundle)
    assert session.trust_env is False


def test_without_one_the_default_trust_store_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert Transport()._session().verify is True
