"""inv dns's pure part: the records for the split topology, their checks, the SPF
lookup count, DKIM out of Stalwart's zone text, and the --zone fragment (read back by
dnspython's zone parser, never by tailwart's own code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from tailwart.dns import DnsInputError
from tailwart.dns.dkim import dkim_from_zone_text, zone_text_of
from tailwart.dns.records import DkimKey, check_txt, desired_records, mta_sts_id, mta_sts_policy
from tailwart.dns.run import DnsOptions, run_dns
from tailwart.dns.spf import count_lookups, spf_text
from tailwart.settings import Settings, SettingsError, from_mapping
from tailwart.settings.example import example_values

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ED25519 = "v=DKIM1; k=ed25519; h=sha256; p=r/AUl1/GBOhNcDSU+Qy18bPaiZ36ZBiUAsnBR5R86kU="


def settings(**more: str) -> Settings:
    values = {
        **example_values(),
        "OUTBOUND_ADDRESSES": "198.51.100.7,2001:db8::7",
        "EDGE_PUBLIC_ADDRESSES": "203.0.113.25,2001:db8::25",
        **more,
    }
    return from_mapping({k: v for k, v in values.items() if v != "-"})


def no_lookups(name: str) -> list[str]:
    raise AssertionError(f"no lookup expected, asked {name}")


# ---------------------------------------------------------------- SPF


def test_spf_without_a_smarthost_lists_the_mailbox_egress_and_never_mx() -> None:
    assert spf_text(settings()) == "v=spf1 ip4:198.51.100.7 ip6:2001:db8::7 -all"


def test_spf_with_a_smarthost_includes_the_relay() -> None:
    s = settings(STALWART_SMARTHOST="smtp.relay.example.net:587", SPF_INCLUDE="_spf.relay.net")
    text = spf_text(s)
    assert "include:_spf.relay.net" in text and " mx" not in text


def test_a_smarthost_without_spf_include_is_refused_naming_the_key() -> None:
    s = settings(STALWART_SMARTHOST="smtp.relay.example.net:587", OUTBOUND_ADDRESSES="-")
    with pytest.raises(SettingsError) as caught:
        spf_text(s)
    assert caught.value.exit_code == 2 and "SPF_INCLUDE" in str(caught.value)


def test_no_outbound_path_at_all_is_refused_naming_the_key() -> None:
    with pytest.raises(SettingsError) as caught:
        spf_text(settings(OUTBOUND_ADDRESSES="-"))
    assert "OUTBOUND_ADDRESSES" in str(caught.value)


def chain(length: int) -> dict[str, list[str]]:
    """_spf.relay.net includes s1, s1 includes s2, ...: ``length`` includes in all."""
    zone = {}
    for i in range(length):
        name = "_spf.relay.net" if i == 0 else f"s{i}.relay.net"
        last = i == length - 1
        zone[name] = [
            "v=spf1 ip4:192.0.2.1 -all" if last else f"v=spf1 include:s{i + 1}.relay.net -all"
        ]
    return zone


def test_ten_lookups_pass_eleven_are_refused() -> None:
    ten, eleven = chain(9), chain(10)
    spf = "v=spf1 include:_spf.relay.net -all"
    assert count_lookups(spf, lambda n: ten.get(n, [])) == 9
    assert count_lookups(spf + " a", lambda n: ten.get(n, [])) == 10
    with pytest.raises(DnsInputError) as caught:
        count_lookups(spf + " mx:x.relay.net", lambda n: eleven.get(n, []))
    assert caught.value.exit_code == 2 and "more than 10 DNS lookups" in str(caught.value)


def test_an_include_without_spf_is_refused() -> None:
    with pytest.raises(DnsInputError, match="0 SPF records"):
        count_lookups("v=spf1 include:none.relay.net -all", lambda n: ["other text"])


# ---------------------------------------------------------------- TXT values


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('v=DKIM1; p="abc', "quotes and backslashes"),
        ("v=DMARC1;\np=none", "U+000A"),
        ("v=spf1 \\-all", "quotes and backslashes"),
        ("x" * 5000, "5000 characters"),
        ("", "empty"),
    ],
)
def test_hostile_txt_values_are_clear_errors(value: str, why: str) -> None:
    with pytest.raises(DnsInputError) as caught:
        check_txt("k._domainkey.example.org", value)
    assert why in str(caught.value) and "nothing was published" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_300_character_value_is_split_into_255_byte_strings() -> None:
    text = "v=DKIM1; k=rsa; p=" + "A" * 282
    rdata = check_txt("k", text)
    assert rdata == f'"{text[:255]}" "{text[255:]}"'


# ---------------------------------------------------------------- the record set


def by_type(
    s: Settings, dkim: list[DkimKey] | None = None
) -> dict[tuple[str, str], tuple[str, ...]]:
    desired = desired_records(s, spf_text(s), dkim)
    return {(r.name, r.type): r.values for r in desired.records}


def test_mx_addresses_and_client_names_point_at_the_edge() -> None:
    got = by_type(settings())
    assert got[("example.org", "MX")] == ("10 mail.example.org.",)
    assert got[("mail.example.org", "A")] == ("203.0.113.25",)
    assert got[("mail.example.org", "AAAA")] == ("2001:db8::25",)
    for label in ("mta-sts", "autoconfig", "autodiscover"):
        assert got[(f"{label}.example.org", "CNAME")] == ("mail.example.org.",)
    assert got[("mail.example.org", "CAA")] == ('0 issue "letsencrypt.org"',)


def test_srv_lists_only_the_ports_the_edge_exposes() -> None:
    got = by_type(settings(EDGE_PUBLIC_PORTS="25,993"))
    assert got[("_imaps._tcp.example.org", "SRV")] == ("0 1 993 mail.example.org.",)
    for service in ("_submissions._tcp", "_submission._tcp", "_imap._tcp"):
        assert got[(f"{service}.example.org", "SRV")] == ("0 0 0 .",)


def test_mta_sts_id_follows_the_policy() -> None:
    testing, enforce = settings(), settings(MTA_STS_MODE="enforce")
    assert "mode: enforce" in mta_sts_policy(enforce)
    first = by_type(testing)[("_mta-sts.example.org", "TXT")]
    second = by_type(enforce)[("_mta-sts.example.org", "TXT")]
    assert first != second
    assert first == (f'"v=STSv1; id={mta_sts_id(mta_sts_policy(testing))}"',)


def test_dmarc_and_tlsrpt_report_to_the_configured_address() -> None:
    got = by_type(settings(DMARC_POLICY="quarantine", DNS_REPORT_TO="reports@example.org"))
    assert got[("_dmarc.example.org", "TXT")] == (
        '"v=DMARC1; p=quarantine; rua=mailto:reports@example.org"',
    )
    assert got[("_smtp._tls.example.org", "TXT")] == (
        '"v=TLSRPTv1; rua=mailto:reports@example.org"',
    )


def test_an_unknown_ca_gets_no_caa_and_a_note() -> None:
    s = settings(ACME_DIRECTORY="https://pebble.test:14000/dir")
    desired = desired_records(s, spf_text(s), [])
    assert not [r for r in desired.records if r.type == "CAA"]
    assert any("CAA left out" in note for note in desired.notes)


def test_a_hostile_dkim_key_is_refused() -> None:
    s = settings()
    with pytest.raises(DnsInputError, match="DKIM"):
        desired_records(s, spf_text(s), [DkimKey("sel", 'v=DKIM1; p=AAAA"; x')])
    with pytest.raises(DnsInputError, match="selector"):
        desired_records(s, spf_text(s), [DkimKey("a.b", ED25519)])


def test_without_edge_addresses_inv_dns_names_the_key() -> None:
    s = settings(EDGE_PUBLIC_ADDRESSES="-", EDGE_PUBLIC_IP="-")
    with pytest.raises(SettingsError, match="EDGE_PUBLIC_ADDRESSES"):
        desired_records(s, spf_text(s), [])


# ---------------------------------------------------------------- the .env keys


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DNS_TSIG_SECRET", 'c2VjcmV0"; rm -rf /'),
        ("DNS_TSIG_SECRET", "c2hvcnQ="),
        ("DNS_ZONE", 'exa"mple.org'),
        ("DNS_ZONE", "other.net"),
        ("EDGE_PUBLIC_ADDRESSES", "127.0.0.1"),
        ("OUTBOUND_ADDRESSES", "198.51.100.7, 198.51.100.8"),
        ("SPF_INCLUDE", "relay.net;-all"),
        ("MTA_STS_MAX_AGE", "60"),
    ],
)
def test_bad_dns_keys_exit_2_naming_the_key_and_hiding_secrets(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(**{key: value})
    assert caught.value.exit_code == 2
    assert f"error: {key}" in str(caught.value)
    if key == "DNS_TSIG_SECRET":
        assert value not in str(caught.value)


# ---------------------------------------------------------------- DKIM out of Stalwart


def recorded_zone_text() -> str:
    """The dnsZoneFile a real Stalwart 0.16.18 sent (recorded first start, domain good.test)."""
    for line in (FIXTURES / "stalwart-0.16.18" / "01-first-start.jsonl").open():
        exchange = json.loads(line)
        for name, result, _ in exchange.get("response", {}).get("methodResponses", []):
            if name == "x:Domain/get" and "dnsZoneFile" in json.dumps(result):
                return zone_text_of(result, "good.test")
    raise AssertionError("no recorded x:Domain/get with a dnsZoneFile")


def test_dkim_keys_come_from_the_recorded_zone_and_nothing_else() -> None:
    text = recorded_zone_text()
    keys = dkim_from_zone_text(text, "good.test")
    # the oracle: the selectors of the zone text's own _domainkey lines. Stalwart makes the
    # RSA key a moment after the Ed25519 one, so a first-start recording holds one or both
    selectors = re.findall(r"^(v1-[a-z0-9]+-\d{8})\._domainkey\.", text, flags=re.MULTILINE)
    assert [k.selector for k in keys] == selectors
    assert selectors[0] == "v1-ed25519-20261207"
    assert keys[0].text.startswith("v=DKIM1; k=ed25519; h=sha256; p=")
    if len(keys) > 1:
        assert keys[1].text.startswith("v=DKIM1; k=rsa; h=sha256; p=MIIB")


def test_a_split_rsa_key_is_joined() -> None:
    text = (
        'sel._domainkey.example.org. IN TXT "v=DKIM1; k=rsa; p='
        + "A" * 230
        + '" "'
        + "B" * 100
        + '"\nexample.org. IN TXT "v=spf1 mx -all"\n'
    )
    keys = dkim_from_zone_text(text, "example.org")
    assert keys == [DkimKey("sel", "v=DKIM1; k=rsa; p=" + "A" * 230 + "B" * 100)]


def test_a_zone_text_with_a_string_over_255_bytes_is_a_clear_error() -> None:
    text = 'sel._domainkey.example.org. IN TXT "' + "A" * 300 + '"\n'
    with pytest.raises(DnsInputError, match="does not parse"):
        dkim_from_zone_text(text, "example.org")


# ---------------------------------------------------------------- --zone


def test_the_zone_fragment_parses_and_holds_the_records() -> None:
    lines: list[str] = []
    s = settings()
    code = run_dns(
        s,
        DnsOptions(zone=True),
        lines.append,
        read_dkim=lambda _: [DkimKey("v1-ed25519-20261207", ED25519)],
        lookup=no_lookups,
    )
    assert code == 0
    zone = dns.zone.from_text(
        "\n".join(lines), origin="example.org.", relativize=False, check_origin=False
    )

    def rdatas(name: str, rtype: str) -> set[str]:
        node = zone.get_rdataset(dns.name.from_text(name), dns.rdatatype.from_text(rtype))
        assert node is not None, (name, rtype)
        return {r.to_text() for r in node}

    assert rdatas("example.org.", "MX") == {"10 mail.example.org."}
    assert rdatas("example.org.", "TXT") == {'"v=spf1 ip4:198.51.100.7 ip6:2001:db8::7 -all"'}
    assert rdatas("v1-ed25519-20261207._domainkey.example.org.", "TXT") == {f'"{ED25519}"'}
    assert rdatas("mail.example.org.", "A") == {"203.0.113.25"}
    assert rdatas("mta-sts.example.org.", "CNAME") == {"mail.example.org."}
    assert rdatas("_submissions._tcp.example.org.", "SRV") == {"0 1 465 mail.example.org."}
    assert rdatas("_dmarc.example.org.", "TXT") == {
        '"v=DMARC1; p=none; rua=mailto:postmaster@example.org"'
    }
    names = {name.to_text() for name in zone.nodes}
    assert not any(n.startswith("_tailwart") for n in names)  # no ownership in a paste


def test_inv_dns_points_at_the_edge_exactly_the_names_the_edge_serves() -> None:
    from tailwart.dns.records import EDGE_NAMES
    from tailwart.edge.render import SERVICE_NAMES

    assert set(EDGE_NAMES) == {label for label, _ in SERVICE_NAMES}
