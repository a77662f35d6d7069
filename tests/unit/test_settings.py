"""The .env contract: loading, validation, masking, and the bad-input table.

Bad input is driven through the real CLI (`inv render`), so each case proves
the exit code, the message naming the key, and that no file was written.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tailwart.settings import BY_NAME, KEYS, SettingsError, from_mapping, load
from tailwart.settings.example import env_example, example_values
from tests.support.testkit import inv as run_inv

ROOT = Path(__file__).resolve().parents[2]


def inv(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_inv(*args, cwd=cwd, timeout=60)


def env_text(values: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


Edit = Callable[[dict[str, str]], str]


def drop(key: str) -> Edit:
    return lambda v: env_text({k: x for k, x in v.items() if k != key})


def setting(key: str, value: str) -> Edit:
    return lambda v: env_text({**v, key: value})


def plus(line: str) -> Edit:
    return lambda v: env_text(v) + line + "\n"


# (case id, edit, key the message must name, words the message must hold)
BAD: list[tuple[str, Edit, str, str]] = [
    ("missing-required", drop("MAIL_DOMAIN"), "MAIL_DOMAIN", "is missing"),
    ("missing-mailbox-fqdn", drop("MAILBOX_FQDN"), "MAILBOX_FQDN", "is missing"),
    (
        "empty-secret",
        setting("STALWART_DB_PASSWORD", ""),
        "STALWART_DB_PASSWORD",
        "secret is empty",
    ),
    (
        "placeholder-changeme",
        setting("STALWART_RECOVERY_ADMIN", "changeme"),
        "STALWART_RECOVERY_ADMIN",
        "placeholder",
    ),
    (
        "placeholder-xxx",
        setting("STALWART_S3_SECRET_KEY", "xxx"),
        "STALWART_S3_SECRET_KEY",
        "placeholder",
    ),
    (
        "short-secret",
        setting("STALWART_REDIS_PASSWORD", "abc12"),
        "STALWART_REDIS_PASSWORD",
        "shorter than 8",
    ),
    ("port-zero", setting("STALWART_DB_PORT", "0"), "STALWART_DB_PORT", "between 1 and 65535"),
    (
        "port-70000",
        setting("STALWART_REDIS_PORT", "70000"),
        "STALWART_REDIS_PORT",
        "between 1 and 65535",
    ),
    ("port-25a", setting("STALWART_S3_PORT", "25a"), "STALWART_S3_PORT", "whole number"),
    ("host-space", setting("STALWART_DB_HOST", '"pg host"'), "STALWART_DB_HOST", "not a DNS label"),
    (
        "host-leading-dash",
        setting("STALWART_REDIS_HOST", "-redis"),
        "STALWART_REDIS_HOST",
        "not a DNS label",
    ),
    ("fqdn-no-dot", setting("MAIL_HOSTNAME", "mail"), "MAIL_HOSTNAME", "at least one dot"),
    (
        "cidr-slash-0",
        setting("EDGE_TAILNET_ADDR", "0.0.0.0/0"),
        "EDGE_TAILNET_ADDR",
        "every address",
    ),
    ("cidr-range", setting("EDGE_TAILNET_ADDR", "100.64.0.0/10"), "EDGE_TAILNET_ADDR", "one host"),
    (
        "edge-loopback",
        setting("EDGE_TAILNET_ADDR", "127.0.0.1/32"),
        "EDGE_TAILNET_ADDR",
        "not loopback",
    ),
    (
        "bare-ipv6-edge",
        setting("EDGE_TAILNET_ADDR", "fd7a:115c:a1e0::5"),
        "EDGE_TAILNET_ADDR",
        "/128",
    ),
    ("tag-no-prefix", setting("MAILBOX_TAG", "stalwart"), "MAILBOX_TAG", "tag:"),
    ("duplicate-key", plus("MAIL_DOMAIN=example.net"), "MAIL_DOMAIN", "more than once"),
    (
        "unknown-key-typo",
        lambda v: drop("MAIL_DOMAIN")(v) + "MAIL_DOMIAN=example.org\n",
        "MAIL_DOMIAN",
        "did you mean MAIL_DOMAIN",
    ),
    (
        "image-latest",
        setting("STALWART_IMAGE", "stalwartlabs/stalwart:latest"),
        "STALWART_IMAGE",
        "pinned",
    ),
    (
        "image-untagged",
        setting("STALWART_IMAGE", "stalwartlabs/stalwart"),
        "STALWART_IMAGE",
        "pinned tag",
    ),
    ("url-scheme", setting("TS_API_URL", "ftp://api.example.net"), "TS_API_URL", "http"),
    (
        "smarthost-no-port",
        setting("STALWART_SMARTHOST", "relay.example.net"),
        "STALWART_SMARTHOST",
        "host:port",
    ),
    (
        "smarthost-ipv6-brackets",
        setting("STALWART_SMARTHOST", "2001:db8::1:587"),
        "STALWART_SMARTHOST",
        "brackets",
    ),
    (
        "smarthost-tls-choice",
        setting("STALWART_SMARTHOST_TLS", "ssl"),
        "STALWART_SMARTHOST_TLS",
        "starttls, implicit",
    ),
    ("redis-db-negative", setting("STALWART_REDIS_DB", "-1"), "STALWART_REDIS_DB", "non-negative"),
    (
        "ident-space",
        setting("STALWART_DB_NAME", '"stal wart"'),
        "STALWART_DB_NAME",
        "letters, digits",
    ),
    (
        "smarthost-user-no-password",
        setting("STALWART_SMARTHOST_USER", "relayuser"),
        "STALWART_SMARTHOST_PASSWORD",
        "STALWART_SMARTHOST_USER is set",
    ),
    (
        "mailbox-equals-public",
        setting("MAILBOX_FQDN", "mail.example.org"),
        "MAILBOX_FQDN",
        "loops back",
    ),
    (
        "mailbox-node-mismatch",
        setting("MAILBOX_FQDN", "mailbox.tail1234.ts.net"),
        "MAILBOX_FQDN",
        "MAILBOX_NODE_NAME",
    ),
    # a lone word may be a pasted secret: named by its line, never echoed (issue 14, finding 7)
    ("line-without-equals", plus("JUST_A_WORD"), ".env (line", "has no '='"),
    ("ssh-targets", setting("EDGE_HOSTS", "root@edge one"), "EDGE_HOSTS", "user@host"),
    ("max-sessions-zero", plus("EDGE_MAX_SESSIONS=0"), "EDGE_MAX_SESSIONS", "between 1 and"),
    ("max-sessions-word", plus("EDGE_MAX_SESSIONS=many"), "EDGE_MAX_SESSIONS", "whole number"),
    # STALWART_TLS: each mode's keys, an https directory, a usable TSIG secret
    ("tls-mode", setting("STALWART_TLS", "letsencrypt"), "STALWART_TLS", "acme-http, acme-dns"),
    (
        "acme-dns-without-server",
        setting("STALWART_TLS", "acme-dns"),
        "ACME_DNS_SERVER",
        "is missing while STALWART_TLS=acme-dns",
    ),
    (
        "files-without-key",
        plus("STALWART_TLS=files\nSTALWART_TLS_CERT_FILE=/etc/tls/fullchain.pem"),
        "STALWART_TLS_KEY_FILE",
        "is missing while STALWART_TLS=files",
    ),
    (
        "acme-over-http",
        setting("ACME_DIRECTORY", "http://acme.example.net/directory"),
        "ACME_DIRECTORY",
        "https://",
    ),
    (
        "tsig-not-base64",
        plus("ACME_DNS_TSIG_SECRET=not*base64*at*all"),
        "ACME_DNS_TSIG_SECRET",
        "base64",
    ),
    ("tsig-md5", plus("ACME_DNS_TSIG_ALGORITHM=hmac-md5"), "ACME_DNS_TSIG_ALGORITHM", "hmac-sha"),
    (
        "alias-twice",
        plus("MAIL_HOSTNAME_ALIASES=imap.example.org,IMAP.example.org"),
        "MAIL_HOSTNAME_ALIASES",
        "twice",
    ),
    ("contact-not-email", plus("ACME_CONTACT=postmaster"), "ACME_CONTACT", "e-mail address"),
    (
        "edge-v6-in-the-v4-key",
        setting("EDGE_TAILNET_ADDR", "fd7a:115c:a1e0::b/128"),
        "EDGE_TAILNET_ADDR",
        "IPv4 tailnet address",
    ),
    (
        "edge-v4-in-the-v6-key",
        setting("EDGE_TAILNET_ADDR6", "100.64.0.11/32"),
        "EDGE_TAILNET_ADDR6",
        "IPv6 tailnet address",
    ),
    # issue 21: the management credential never crosses a network in clear ...
    (
        "management-http-public-address",
        setting("STALWART_MANAGEMENT_URL", "http://203.0.113.9:8080"),
        "STALWART_MANAGEMENT_URL",
        "in clear",
    ),
    (
        "management-http-public-name",
        setting("STALWART_MANAGEMENT_URL", "http://mgmt.example.org:8080"),
        "STALWART_MANAGEMENT_URL",
        "STALWART_MANAGEMENT_NETWORKS",
    ),
    (
        "management-networks-everything",
        plus("STALWART_MANAGEMENT_NETWORKS=100.64.0.0/10,::/0"),
        "STALWART_MANAGEMENT_NETWORKS",
        "every address",
    ),
    (
        "management-networks-empty",
        plus("STALWART_MANAGEMENT_NETWORKS="),
        "STALWART_MANAGEMENT_NETWORKS",
        "is empty",
    ),
    # ... and no secret is one a mask would give away
    (
        "generated-secret-word-like",
        setting("STALWART_DB_PASSWORD", "correcthorsebatterystaple"),
        "STALWART_DB_PASSWORD",
        "word-like",
    ),
    (
        "generated-secret-digits",
        plus("BACKUP_PASSWORD=2026113012345678"),
        "BACKUP_PASSWORD",
        "word-like",
    ),
    (
        "admin-password-short",
        setting("STALWART_RECOVERY_ADMIN", "administrator:abc12"),
        "STALWART_RECOVERY_ADMIN",
        "password is shorter than 8",
    ),
    (
        "admin-password-word",
        setting("STALWART_RECOVERY_ADMIN", "admin:passwordpassword"),
        "STALWART_RECOVERY_ADMIN",
        "word-like",
    ),
    (
        "secret-inside-a-host-name",
        setting("STALWART_REDIS_PASSWORD", "tail1234.ts"),
        "STALWART_REDIS_PASSWORD",
        "inside another key's value",
    ),
]


@pytest.mark.parametrize(("case", "edit", "key", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_env_exits_2_names_key_and_writes_nothing(
    tmp_path: Path, case: str, edit: Edit, key: str, words: str
) -> None:
    env = tmp_path / ".env"
    env.write_text(edit(example_values()))
    env.chmod(0o600)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = inv(tmp_path, "render", "--env-file", str(env))
    assert result.returncode == 2, result.stderr
    assert key in result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no caddy/ dir, nothing written


#: http:// management URLs the contract accepts: loopback, the tailnet's ranges, MagicDNS
#: names, and a network listed in STALWART_MANAGEMENT_NETWORKS (the test worlds' own)
MANAGEMENT_OK: list[dict[str, str]] = [
    {"STALWART_MANAGEMENT_URL": "http://127.0.0.1:8080"},
    {"STALWART_MANAGEMENT_URL": "http://[::1]:8080"},
    {"STALWART_MANAGEMENT_URL": "http://localhost:8080"},
    {"STALWART_MANAGEMENT_URL": "http://100.101.102.103:8080"},
    {"STALWART_MANAGEMENT_URL": "http://[fd7a:115c:a1e0::7]:8080"},
    {"STALWART_MANAGEMENT_URL": "http://mgmt.tail9999.ts.net:8080"},
    {"STALWART_MANAGEMENT_URL": "http://STALWART.tail1234.ts.net:8080/"},
    {"STALWART_MANAGEMENT_URL": "https://mgmt.example.org:8443"},
    {
        "STALWART_MANAGEMENT_URL": "http://198.18.146.2:8080",
        "STALWART_MANAGEMENT_NETWORKS": "198.18.0.0/15",
    },
    {
        "MAILBOX_NODE_NAME": "stalwart",
        "MAILBOX_FQDN": "stalwart.tailwart.test",
        "STALWART_MANAGEMENT_URL": "http://stalwart.tailwart.test:8080",
    },
]


@pytest.mark.parametrize("values", MANAGEMENT_OK, ids=lambda v: v["STALWART_MANAGEMENT_URL"])
def test_http_management_url_to_the_tailnet_or_loopback_is_accepted(
    values: dict[str, str],
) -> None:
    settings = from_mapping({**example_values(), **values})
    assert settings["STALWART_MANAGEMENT_URL"] == values["STALWART_MANAGEMENT_URL"]


def test_a_third_party_secret_of_letters_is_accepted() -> None:
    """A relay's password is not tailwart's to choose (a Gmail app password is letters)."""
    values = {
        **example_values(),
        "STALWART_SMARTHOST": "smtp.gmail.com:587",
        "STALWART_SMARTHOST_USER": "me@example.org",
        "STALWART_SMARTHOST_PASSWORD": "abcdefghijklmnop",
    }
    assert from_mapping(values)["STALWART_SMARTHOST_PASSWORD"] == "abcdefghijklmnop"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    values = example_values()
    values.update({"STALWART_DB_PORT": "0", "MAIL_HOSTNAME": "mail", "MAILBOX_TAG": "stalwart"})
    del values["STALWART_RECOVERY_ADMIN"]
    env = tmp_path / ".env"
    env.write_text(env_text(values))
    env.chmod(0o600)
    result = inv(tmp_path, "render", "--env-file", str(env))
    assert result.returncode == 2
    for key in ("STALWART_DB_PORT", "MAIL_HOSTNAME", "MAILBOX_TAG", "STALWART_RECOVERY_ADMIN"):
        assert key in result.stderr
    assert "4 error(s)" in result.stderr


def test_secrets_are_masked_in_errors(tmp_path: Path) -> None:
    values = example_values()
    values["STALWART_DB_PASSWORD"] = "changeme"
    values["STALWART_S3_SECRET_KEY"] = "s3cr"  # too short: still never shown
    env = tmp_path / ".env"
    env.write_text(env_text(values))
    env.chmod(0o600)
    result = inv(tmp_path, "render", "--env-file", str(env))
    assert result.returncode == 2
    assert "<secret, 8 chars>" in result.stderr
    for secret in [v for k, v in values.items() if BY_NAME[k].secret]:
        assert secret not in result.stderr + result.stdout


def test_missing_env_file_exits_2_with_advice(tmp_path: Path) -> None:
    result = inv(tmp_path, "render", "--env-file", str(tmp_path / ".env"))
    assert result.returncode == 2
    assert "copy .env.example" in result.stderr


TOLERABLE: list[tuple[str, Callable[[str], str]]] = [
    ("utf8-bom", lambda t: "\ufeff" + t),
    ("crlf", lambda t: t.replace("\n", "\r\n")),
    (
        "double-quotes",
        lambda t: t.replace(
            "MAILBOX_FQDN=stalwart.tail1234.ts.net", 'MAILBOX_FQDN="stalwart.tail1234.ts.net"'
        ),
    ),
    (
        "single-quotes",
        lambda t: t.replace(
            "MAILBOX_FQDN=stalwart.tail1234.ts.net", "MAILBOX_FQDN='stalwart.tail1234.ts.net'"
        ),
    ),
    ("export-prefix", lambda t: "".join(f"export {line}\n" for line in t.splitlines())),
    (
        "trailing-comment",
        lambda t: t.replace(
            "MAILBOX_FQDN=stalwart.tail1234.ts.net",
            "MAILBOX_FQDN=stalwart.tail1234.ts.net  # the edge dials this",
        ),
    ),
    ("comment-lines-and-blanks", lambda t: "# tailwart\n\n" + t + "\n# end\n"),
]


@pytest.mark.parametrize(("case", "transform"), TOLERABLE, ids=[t[0] for t in TOLERABLE])
def test_tolerable_forms_load_correctly(
    tmp_path: Path, case: str, transform: Callable[[str], str]
) -> None:
    values = example_values()
    env = tmp_path / ".env"
    env.write_bytes(transform(env_text(values)).encode("utf-8"))
    env.chmod(0o600)
    settings = load(env)
    assert settings["MAILBOX_FQDN"] == "stalwart.tail1234.ts.net"
    assert settings["STALWART_DB_PASSWORD"] == values["STALWART_DB_PASSWORD"]
    assert settings["MAIL_DOMAIN"] == "example.org"
    result = inv(tmp_path, "render", "--env-file", str(env))
    assert result.returncode == 0, result.stderr
    assert '"stalwart.tail1234.ts.net:25"' in (tmp_path / "caddy" / "caddy.json").read_text()


def test_unknown_key_is_a_warning_with_suggestion_and_strict_makes_it_an_error(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text(env_text(example_values()) + "STALWART_DB_PASWORD=whatever1\n")
    env.chmod(0o600)
    ok = inv(tmp_path, "render", "--env-file", str(env))
    assert ok.returncode == 0
    assert "warning: STALWART_DB_PASWORD" in ok.stderr
    assert "did you mean STALWART_DB_PASSWORD?" in ok.stderr
    (tmp_path / "caddy" / "caddy.json").unlink()
    strict = inv(tmp_path, "render", "--env-file", str(env), "--strict")
    assert strict.returncode == 2
    assert not (tmp_path / "caddy" / "caddy.json").exists()


def test_readable_env_is_a_warning_and_strict_refuses(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(env_text(example_values()))
    env.chmod(0o644)
    ok = inv(tmp_path, "render", "--env-file", str(env))
    assert ok.returncode == 0
    assert "mode 0644" in ok.stderr and "chmod 600" in ok.stderr
    (tmp_path / "caddy" / "caddy.json").unlink()
    strict = inv(tmp_path, "render", "--env-file", str(env), "--strict")
    assert strict.returncode == 2
    assert not (tmp_path / "caddy" / "caddy.json").exists()


def test_defaults_apply_and_optional_keys_stay_empty() -> None:
    settings = from_mapping(example_values())
    assert settings["STALWART_IMAGE"] == "stalwartlabs/stalwart:v0.16.18"
    assert settings["STALWART_S3_BUCKET"] == "stalwart-mail"
    assert settings.port("STALWART_DB_PORT") == 5432
    assert settings["STALWART_SMARTHOST"] == ""
    assert settings.hostport("STALWART_SMARTHOST") is None
    with pytest.raises(KeyError):
        settings["NOT_A_KEY"]


def test_require_names_every_missing_key() -> None:
    settings = from_mapping(example_values())
    with pytest.raises(SettingsError) as err:
        settings.require(["TS_API_TOKEN", "HEADSCALE_URL"], "for this target")
    assert "TS_API_TOKEN" in str(err.value) and "HEADSCALE_URL" in str(err.value)


def test_env_example_matches_the_declaration() -> None:
    committed = (ROOT / ".env.example").read_text()
    assert committed == env_example(), "run: inv env-example"


def test_env_example_documents_every_key_and_holds_no_secret() -> None:
    text = env_example()
    for key in KEYS:
        assert f"{key.name}=" in text
        if key.secret:
            assert f"{key.name}=\n" in text + "\n"
    assert "[secret, required]" in text


def test_env_example_check_task_detects_drift(tmp_path: Path) -> None:
    (tmp_path / ".env.example").write_text(env_example() + "EXTRA=1\n")
    drift = inv(tmp_path, "env-example", "--check")
    assert drift.returncode == 1
    assert ".env.example differ(s) from the declaration" in drift.stderr
    wrote = inv(tmp_path, "env-example")
    assert wrote.returncode == 0 and "wrote .env.example" in wrote.stdout
    assert inv(tmp_path, "env-example", "--check").returncode == 0


def test_committed_example_and_readme_table_are_in_sync() -> None:
    from tailwart.render_files import write_env_example

    assert write_env_example(ROOT, check=True).startswith("up to date")


def test_image_may_name_a_registry_with_a_port() -> None:
    values = example_values()
    values["STALWART_IMAGE"] = "registry.example.org:5000/stalwart:v0.16.18"
    assert from_mapping(values)["STALWART_IMAGE"] == values["STALWART_IMAGE"]
    values["STALWART_IMAGE"] = "registry.example.org:5000/stalwart"
    with pytest.raises(SettingsError, match="pinned tag"):
        from_mapping(values)


def test_another_modes_keys_are_a_warning_naming_the_mode() -> None:
    from tailwart.settings.load import validate

    values = {**example_values(), "STALWART_TLS": "acme-http", "ACME_DNS_SERVER": "192.0.2.53"}
    _, problems = validate([(k, v, None) for k, v in values.items()], "<test>")
    assert [(p.level, p.key) for p in problems] == [("warning", "ACME_DNS_SERVER")]
    assert "belongs to acme-dns" in problems[0].message
