"""Helpers shared by the backends/doctor tests: .env values, DNS zones, running ``inv``.

Kept out of conftest.py so test modules and the benchmarks can import them.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path

from tailwart.settings import Settings, from_mapping
from tailwart.settings.example import example_values
from tests.support.backend_servers import GarageServer, LineServer, Pki, PostgresServer, RedisServer
from tests.support.testkit import ROOT as ROOT
from tests.support.testkit import inv as run_inv

EDGE_IP = "198.18.5.25"
RELAY_NET = "198.18.6.0/24"


def _txt(value: str) -> str:
    return " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))


def _soa(origin: str) -> str:
    return (
        f"$ORIGIN {origin}.\n$TTL 300\n@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 "
        f"86400 300\n@ NS ns.{origin}.\nns A 127.0.0.1\n"
    )


def dkim_key() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def zones() -> dict[str, str]:
    """good.test passes every DNS check; bad.test and odd.test fail or warn on each."""
    key = dkim_key()
    return {
        "good.test": _soa("good.test")
        + (
            "@ MX 10 mail.good.test.\n"
            f"mail A {EDGE_IP}\n"
            '@ TXT "v=spf1 a:mail.good.test include:_spf.relay.test -all"\n'
            '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:postmaster@good.test"\n'
            f"s1._domainkey TXT {_txt('v=DKIM1; k=rsa; p=' + key)}\n"
        ),
        "bad.test": _soa("bad.test")
        + (
            "@ MX 10 mx.elsewhere.test.\n"
            "mail A 198.18.5.99\n"
            '@ TXT "v=spf1 ip4:192.0.2.1 -all"\n'
            '@ TXT "an unrelated verification token"\n'
        ),
        "odd.test": _soa("odd.test")
        + (
            "@ MX 5 backup.odd.test.\n@ MX 10 mail.odd.test.\n"
            f"mail A {EDGE_IP}\nmail A 198.18.5.77\n"
            '@ TXT "v=spf1 -all"\n@ TXT "v=spf1 +all"\n'
            '_dmarc TXT "v=DMARC1; p=none"\n'
            's1._domainkey TXT "v=DKIM1; k=rsa; p="\n'
        ),
        "relay.test": _soa("relay.test")
        + (
            "smtp A 198.18.6.10\nlo A 127.0.0.1\n"
            f'_spf TXT "v=spf1 ip4:{RELAY_NET} a:lo.relay.test -all"\n'
        ),
        "5.18.198.in-addr.arpa": _soa("5.18.198.in-addr.arpa")
        + ("25 PTR mail.good.test.\n26 PTR mail.bad.test.\n77 PTR mail.odd.test.\n"),
    }


def garage_key() -> tuple[str, str]:
    return "GK" + secrets.token_hex(12), secrets.token_hex(32)


def values(**overrides: str) -> dict[str, str]:
    """Valid .env values for the test domain good.test; ``overrides`` replace or add keys."""
    out = example_values()
    out.update(
        {
            "MAIL_DOMAIN": "good.test",
            "MAIL_HOSTNAME": "mail.good.test",
            "MAILBOX_FQDN": "stalwart.tail0000.ts.net",
            "EDGE_PUBLIC_IP": EDGE_IP,
            # no Stalwart in these tests: its management API is a closed loopback port,
            # so nothing (a backup's settings snapshot) ever resolves the tailnet name
            "STALWART_MANAGEMENT_URL": "http://127.0.0.1:9",
        }
    )
    out.update(overrides)
    return {k: v for k, v in out.items() if v != ""}


def settings(**overrides: str) -> Settings:
    return from_mapping(values(**overrides), "<test>")


def backend_values(
    pg: PostgresServer,
    redis: RedisServer,
    garage: GarageServer,
    db: int,
    names: dict[str, str],
    key: tuple[str, str],
    **more: str,
) -> dict[str, str]:
    return values(
        STALWART_DB_HOST=pg.tcp_host,
        STALWART_DB_PORT=str(pg.port),
        STALWART_DB_NAME=names["db"],
        STALWART_DB_USER=names["role"],
        STALWART_DB_PASSWORD=secrets.token_hex(16),
        PG_ADMIN_USER=pg.admin_user,
        STALWART_REDIS_HOST="127.0.0.1",
        STALWART_REDIS_PORT=str(redis.port),
        STALWART_REDIS_DB=str(db),
        STALWART_REDIS_PASSWORD=redis.password,
        STALWART_S3_HOST="127.0.0.1",
        STALWART_S3_PORT=str(garage.s3_port),
        STALWART_S3_REGION=garage.region,
        STALWART_S3_BUCKET=names["bucket"],
        STALWART_S3_ACCESS_KEY=key[0],
        STALWART_S3_SECRET_KEY=key[1],
        GARAGE_ADMIN_URL=garage.admin_url,
        GARAGE_ADMIN_TOKEN=garage.admin_token,
        **more,
    )


def inv(
    *args: str, env_extra: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``inv`` like an operator does; the admin password only via the environment."""
    return run_inv(*args, cwd=cwd, env_extra=env_extra, timeout=180)


HOST = "mail.good.test"


def edge_servers(
    pki: Pki, days: float = 90, names: tuple[str, ...] = (HOST,)
) -> dict[int, LineServer]:
    """Stand-ins for the five public ports as Stalwart answers them through the edge."""
    tls = pki.context(f"edge-{days}-{names[0]}", list(names), days)
    return {
        25: LineServer("220 mail.good.test ESMTP Stalwart"),
        465: LineServer("220 mail.good.test ESMTP Stalwart", tls=tls),
        587: LineServer("220 mail.good.test ESMTP Stalwart", ehlo=["STARTTLS"], starttls=tls),
        143: LineServer("* OK [CAPABILITY IMAP4rev2 STARTTLS] Stalwart ready", starttls=tls),
        993: LineServer("* OK [CAPABILITY IMAP4rev2] Stalwart ready", tls=tls),
    }
