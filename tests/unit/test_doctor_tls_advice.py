"""`inv doctor`'s TLS advice names the STALWART_TLS mode and its next step."""

from __future__ import annotations

import pytest

from tailwart.doctor.tls import PROBLEMS, advice
from tailwart.settings import from_mapping

ACME_DNS = {
    "STALWART_TLS": "acme-dns",
    "ACME_DNS_SERVER": "198.18.0.53",
    "ACME_DNS_TSIG_KEY": "tailwart-acme",
    "ACME_DNS_TSIG_SECRET": "c2VjcmV0LXNlY3JldC1zZWNyZXQh",
    "ACME_DNS_TSIG_ALGORITHM": "hmac-sha512",
}
FILES = {
    "STALWART_TLS": "files",
    "STALWART_TLS_CERT_FILE": "/etc/tailwart/tls/fullchain.pem",
    "STALWART_TLS_KEY_FILE": "/etc/tailwart/tls/privkey.pem",
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_advice_per_mode(example_values: dict[str, str], problem: str) -> None:
    host, domain = example_values["MAIL_HOSTNAME"], example_values["MAIL_DOMAIN"]
    http = advice(problem, from_mapping(example_values))  # acme-http is the default
    assert http == (
        f"{PROBLEMS[problem]}: STALWART_TLS=acme-http: check that the JMAP vhost is deployed "
        f"(`inv deploy-edge`) and that http://{host}/.well-known/acme-challenge/ reaches the "
        f"mailbox (port 80 open to the edge, DNS of {host} at the edge), then "
        "`inv provision --check`"
    )
    dns = advice(problem, from_mapping({**example_values, **ACME_DNS}))
    assert dns == (
        f"{PROBLEMS[problem]}: STALWART_TLS=acme-dns: check that ACME_DNS_SERVER accepts "
        f"updates to {domain} signed with the TSIG key ACME_DNS_TSIG_KEY (hmac-sha512) and "
        f"that the zone is the one public DNS serves for _acme-challenge.{host}, then "
        "`inv provision --check`"
    )
    zone = advice(problem, from_mapping({**example_values, **ACME_DNS, "ACME_DNS_ZONE": "z.test"}))
    assert "updates to z.test signed" in zone
    files = advice(problem, from_mapping({**example_values, **FILES}))
    assert files == (
        f"{PROBLEMS[problem]}: STALWART_TLS=files: check STALWART_TLS_CERT_FILE and "
        "STALWART_TLS_KEY_FILE with `inv check` (leaf first, names, expiry), then `inv restart` "
        "and `inv provision --check`"
    )
    for text in (http, dns, files):
        assert "\n" not in text
    # never a secret in advice
    assert ACME_DNS["ACME_DNS_TSIG_SECRET"] not in dns
