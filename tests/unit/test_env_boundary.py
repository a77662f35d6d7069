"""Issue 14, the value side: hostile and careless .env input, driven through the real tasks.

Every case runs the task runner as an operator does (``inv <task> --env-file …``) and
checks what an operator sees: exit 2, the key (or the .env line) named with the reason,
no traceback, no secret in the output, and nothing written next to the .env.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tailwart.settings import BY_NAME, KEYS
from tailwart.settings.example import example_values
from tests.support.testkit import ROOT, TOOL_CACHE, need
from tests.support.testkit import inv as run_inv


def inv(
    cwd: Path, *args: str, env_file: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    target = [] if env_file is None else ["--env-file", str(env_file)]
    return run_inv(*args, *target, cwd=cwd, timeout=60)


def dq(value: str) -> str:
    """``value`` as a double-quoted .env value (python-dotenv and compose decode these escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'


def write(path: Path, values: Mapping[str, str], quoted: bool = True) -> Path:
    path.write_bytes(
        "".join(f"{k}={dq(v) if quoted else v}\n" for k, v in values.items()).encode("utf-8")
    )
    path.chmod(0o600)
    return path


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def refused(
    tmp_path: Path,
    values: Mapping[str, str],
    *task: str,
    expect: Mapping[str, str],
    hidden: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``task`` on a .env of ``values``; assert the refusal an operator must see.

    ``expect`` maps each key (or '.env (line N)') the message must name to words that must
    follow it on the same line; ``hidden`` are strings that must appear nowhere.
    """
    env = write(tmp_path / ".env", values)
    before = listing(tmp_path)
    result = inv(tmp_path, *task, env_file=env)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    assert "nothing was changed" in result.stderr
    for key, words in expect.items():
        lines = [ln for ln in result.stderr.splitlines() if f"error: {key}" in ln]
        assert lines, f"{key} not named:\n{result.stderr}"
        assert any(words in ln for ln in lines), f"{key}: {words!r} missing:\n{result.stderr}"
    for secret in hidden:
        assert secret not in out
    assert listing(tmp_path) == before  # no caddy/, no temp file, nothing
    return result


def secret_values(values: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(v for k, v in values.items() if BY_NAME[k].secret and v)


# ---------------------------------------------------------------- finding 1: host and IP kinds


def test_scope_id_shell_injection_in_a_host_is_refused_before_compose(tmp_path: Path) -> None:
    values = example_values()
    values["STALWART_DB_HOST"] = "::1%x 5432;touch pwned;true"
    refused(
        tmp_path,
        values,
        "up",
        "--dry-run",
        expect={"STALWART_DB_HOST": "zone id"},
        hidden=secret_values(values),
    )
    assert not (tmp_path / "pwned").exists()


def test_quotes_and_braces_never_reach_host_address_or_bucket_keys(tmp_path: Path) -> None:
    values = example_values()
    values.update(
        {
            "STALWART_REDIS_HOST": 'redis"x.tail1234.ts.net',
            "STALWART_S3_HOST": "garage.{tail1234}.ts.net",
            "EDGE_PUBLIC_IP": "203.0.113.25'",
            "STALWART_S3_BUCKET": "stalwart-{mail}",
            "STALWART_SMARTHOST": "relay'x.example.net:587",
            "DNS_RESOLVER": "[fe80::1%eth0]:53",
            "EDGE_TAILNET_ADDR": "fd7a:115c:a1e0::5%x/128",
            "OUTBOUND_PROBE": "${HOME}:25",
        }
    )
    refused(
        tmp_path,
        values,
        "render",
        expect={
            "STALWART_REDIS_HOST": "not a DNS label",
            "STALWART_S3_HOST": "not a DNS label",
            "EDGE_PUBLIC_IP": "not an IPv4 or IPv6 address",
            "STALWART_S3_BUCKET": "lower-case letters",
            "STALWART_SMARTHOST": "not a DNS label",
            "DNS_RESOLVER": "not an IPv6 address",
            "EDGE_TAILNET_ADDR": "address/prefix",
            "OUTBOUND_PROBE": "not a DNS label",
        },
    )


# ------------------------------------------- finding 2: fullmatch and hygiene in every kind

#: one bad form per run, applied to EVERY key at once (all problems are reported together)
EVERY_KEY_FORMS: dict[str, tuple[Callable[[str], str], str]] = {
    "trailing-newline": (lambda v: v + "\n", "control character (U+000A)"),
    "nul-byte": (lambda v: v[:1] + "\x00" + v[1:], "control character (U+0000)"),
    "bidi-override": (lambda v: v + "\u202e", "invisible format character"),
    "zero-width-space": (lambda v: v[:2] + "\u200b" + v[2:], "invisible format character"),
    "leading-space": (lambda v: " " + v, "whitespace around it"),
    "line-separator": (lambda v: v + "\u2028", "line separator"),
}


def _a_valid_value(name: str, values: Mapping[str, str]) -> str:
    key = BY_NAME[name]
    return values.get(name) or key.default or key.example or "tskey-" + secrets.token_hex(8)


@pytest.mark.parametrize("form", list(EVERY_KEY_FORMS))
def test_every_key_refuses_control_invisible_and_outer_whitespace(
    tmp_path: Path, form: str
) -> None:
    spoil, words = EVERY_KEY_FORMS[form]
    base = example_values()
    values = {key.name: spoil(_a_valid_value(key.name, base)) for key in KEYS}
    refused(
        tmp_path,
        values,
        "render",
        expect={key.name: words for key in KEYS},
        hidden=tuple(v for k, v in values.items() if BY_NAME[k].secret),
    )


def test_trailing_newline_in_the_mailbox_name_never_renders(tmp_path: Path) -> None:
    values = example_values()
    values["MAILBOX_FQDN"] = "stalwart.tail1234.ts.net\n"
    refused(tmp_path, values, "render", expect={"MAILBOX_FQDN": "U+000A"})


def test_postgres_role_and_database_with_a_newline_are_refused_by_bootstrap(
    tmp_path: Path,
) -> None:
    values = example_values()
    values["STALWART_DB_USER"] = "stalwart\n"
    values["STALWART_DB_NAME"] = "stalwart\r"
    values["PG_ADMIN_USER"] = "postgres\u200d"
    refused(
        tmp_path,
        values,
        "bootstrap",
        "--dry-run",
        expect={
            "STALWART_DB_USER": "U+000A",
            "STALWART_DB_NAME": "U+000D",
            "PG_ADMIN_USER": "U+200D",
        },
    )


def test_each_kind_has_a_size_limit(tmp_path: Path) -> None:
    base = example_values()
    kinds_seen: set[str] = set()
    values: dict[str, str] = {}
    for key in KEYS:
        valid = _a_valid_value(key.name, base)
        # a value one past the limit, built from the valid one so only the size is wrong
        values[key.name] = (valid * (key.kind.limit // max(len(valid), 1) + 2))[
            : key.kind.limit + 1
        ]
        kinds_seen.add(key.kind.name)
    result = refused(
        tmp_path,
        values,
        "render",
        expect={k.name: f"at most {k.kind.limit} are allowed" for k in KEYS},
    )
    assert len(result.stderr) < 20_000  # long values are cut short in messages
    assert len(kinds_seen) >= 15


# ------------------------------------------------------ finding 3 (value side): tokens


def test_api_token_with_a_trailing_newline_is_refused_by_acl_naming_the_key(
    tmp_path: Path,
) -> None:
    values = example_values()
    token = "tskey-api-" + secrets.token_hex(12)
    values["TS_API_TOKEN"] = token + "\n"
    values["TS_API_URL"] = "http://127.0.0.1:9"  # never reached; loopback if it were
    shutil.copy2(ROOT / "acl-snippet.hujson", tmp_path / "acl-snippet.hujson")
    refused(
        tmp_path,
        values,
        "acl",
        "--tailscale",
        "--dry-run",
        expect={"TS_API_TOKEN": "U+000A"},
        hidden=(token, token[10:], "Bearer"),
    )


# ------------------------------------------------- finding 4: .env.example and first run


def _tree_copy(dest: Path) -> Path:
    """The files a new user has after cloning (not the .git, caches or built tools)."""
    for part in ("compose", "config"):
        # what inv render/up write there is ignored by git: a clone has none of it
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("config.json"))
    (dest / "caddy").mkdir()
    for item in (ROOT / "caddy").iterdir():
        if item.is_file() and item.name not in ("caddy.json", "jmap.caddy"):
            shutil.copy2(item, dest / "caddy" / item.name)
    for name in (".env.example", "README.md", "acl-snippet.hujson"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _first_run_steps() -> list[str]:
    """The getting-started guide's operator workflow, as the commands it lists."""
    readme = (ROOT / "docs" / "getting-started.md").read_text()
    block = readme.split("## Operator workflow", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [ln.split("#", 1)[0].strip() for ln in block.strip().splitlines()]


def test_readme_first_run_on_the_committed_example_never_exits_2(tmp_path: Path) -> None:
    steps = _first_run_steps()
    # what the README tells a new user to do first, and the two offline steps after it
    assert steps[0] == "cp .env.example .env && chmod 600 .env"
    assert steps[1:3] == ["inv check", "inv render"]
    tree = _tree_copy(tmp_path / "tree")
    env = tree / ".env"
    shutil.copy2(tree / ".env.example", env)
    env.chmod(0o600)
    # as copied, the only errors are the required secrets the user must fill in
    as_is = inv(tree, "check", env_file=env)
    required_secrets = [k.name for k in KEYS if k.secret and k.required]
    named = re.findall(r"error: (\S+)", as_is.stderr)
    assert as_is.returncode == 2 and sorted(named) == sorted(required_secrets), as_is.stderr
    assert "TS_TAILNET" not in as_is.stderr
    # "fill in the secrets": only the empty required-secret lines change
    text = env.read_text()
    for name in required_secrets:
        text, count = re.subn(
            rf"^{name}=$", f"{name}={secrets.token_hex(32)}", text, flags=re.MULTILINE
        )
        assert count == 1, name
    env.write_text(text)
    for step in steps[1:3]:
        task = step.split()[1]
        result = inv(tree, task, env_file=env)
        assert result.returncode != 2, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert "nothing was changed" not in result.stderr
    assert (tree / "caddy" / "caddy.json").is_file()


def test_every_example_in_env_example_validates_when_uncommented() -> None:
    from tailwart.settings import validate

    pairs = []
    for number, line in enumerate((ROOT / ".env.example").read_text().splitlines(), 1):
        match = re.fullmatch(r"#?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match and match[2]:
            pairs.append((match[1], match[2], number))
    assert {p[0] for p in pairs} >= {"TS_TAILNET", "EDGE_PUBLIC_IP", "GARAGE_ADMIN_URL"}
    _, problems = validate(pairs)
    kind_problems = [
        p for p in problems if "expected" in p.message and "is missing" not in p.message
    ]
    assert kind_problems == []


@pytest.mark.parametrize("tailnet", ["-", "user@github", "example.com", "alice@example.org"])
def test_real_tailnet_names_are_accepted(tmp_path: Path, tailnet: str) -> None:
    values = example_values()
    values["TS_TAILNET"] = tailnet
    env = write(tmp_path / ".env", values)
    result = inv(tmp_path, "render", env_file=env)
    assert result.returncode == 0, result.stderr


# ---------------------------------------- finding 7: an unparseable line is never quoted


def test_unparseable_lines_are_named_by_number_never_quoted(tmp_path: Path) -> None:
    values = example_values()
    leaked = "s3cr3t-" + secrets.token_hex(12)
    lone = "tskey-api-" + secrets.token_hex(12)
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    env = tmp_path / ".env"
    env.write_text(body + f'STALWART_SMARTHOST_PASSWORD="{leaked}\n' + f"{lone}\n")
    env.chmod(0o600)
    count = body.count("\n")
    result = inv(tmp_path, "render", env_file=env)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out
    assert f"error: .env (line {count + 1}): cannot be parsed" in result.stderr
    assert "quote never closed" in result.stderr
    for part in (leaked, leaked[:10], lone, lone[:12]):
        assert part not in out
    # a pasted token alone on a line: a variable-like word, or not even that
    word = "K" + secrets.token_hex(12).upper()
    for alone, says in ((word, "has no '='"), (lone, "has a key that is not a variable name")):
        env.write_text(body + f"{alone}\n")
        result = inv(tmp_path, "render", env_file=env)
        assert result.returncode == 2
        assert f"error: .env (line {count + 1}): {says}" in result.stderr, result.stderr
        assert "the line is not shown" in result.stderr
        assert alone not in result.stdout + result.stderr


# ------------------------------------------ findings 8 and 9: numbers, sizes, odd files


def test_unicode_digits_and_huge_numbers_are_a_clean_exit_2(tmp_path: Path) -> None:
    values = example_values()
    values.update(
        {
            "STALWART_DB_PORT": "²",
            "STALWART_REDIS_PORT": "9" * 5000,
            "STALWART_S3_PORT": "\uff13\uff19\uff10\uff10",  # full-width 3900
            "STALWART_REDIS_DB": "³",
            "EDGE_KEEP_RELEASES": "1" + "0" * 4999,
        }
    )
    result = refused(
        tmp_path,
        values,
        "render",
        expect={
            "STALWART_DB_PORT": "ASCII digits",
            "STALWART_REDIS_PORT": "at most 5 are allowed",
            "STALWART_S3_PORT": "ASCII digits",
            "STALWART_REDIS_DB": "ASCII digits",
            "EDGE_KEEP_RELEASES": "at most 9 are allowed",
        },
    )
    assert "9" * 100 not in result.stderr  # a long value is cut short


def test_nul_byte_and_huge_secret_are_refused_without_showing_them(tmp_path: Path) -> None:
    values = example_values()
    nul = "abc\x00" + secrets.token_hex(8)
    huge = secrets.token_hex(64 * 1024)  # 128 KiB
    values["STALWART_DB_PASSWORD"] = nul
    values["STALWART_RECOVERY_ADMIN"] = huge
    result = refused(
        tmp_path,
        values,
        "render",
        expect={
            "STALWART_DB_PASSWORD": "U+0000",
            "STALWART_RECOVERY_ADMIN": "at most 1024 are allowed",
        },
        hidden=(nul[4:], huge[:32]),
    )
    assert "<secret, 131072 chars>" in result.stderr
    assert len(result.stderr) < 4000


def test_urls_with_newline_tab_or_credentials_are_refused_and_never_printed(
    tmp_path: Path,
) -> None:
    values = example_values()
    password = "pw-" + secrets.token_hex(6)
    values.update(
        {
            "GARAGE_ADMIN_URL": "http://garage.tail1234.ts.net:3903\n",
            "HEADSCALE_URL": "https://headscale.example.net\t/x",
            "TS_API_URL": f"https://operator:{password}@api.example.net",
        }
    )
    refused(
        tmp_path,
        values,
        "render",
        expect={
            "GARAGE_ADMIN_URL": "U+000A",
            "HEADSCALE_URL": "U+0009",
            "TS_API_URL": "must not carry credentials",
        },
        hidden=(password, "operator:"),
    )


def _file_refused(cwd: Path, env_file: str, words: str) -> None:
    before = listing(cwd)
    result = inv(cwd, "render", env_file=env_file)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert words in result.stderr, result.stderr
    assert listing(cwd) == before


def test_env_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    _file_refused(tmp_path, str(tmp_path / ".env"), "is a directory")


def test_empty_env_file_flag(tmp_path: Path) -> None:
    _file_refused(tmp_path, "", "the .env path is empty")


def test_fifo_as_env_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "env.fifo"
    os.mkfifo(fifo)
    # nobody ever writes: reading it would block forever (inv's timeout would fail the test)
    _file_refused(tmp_path, str(fifo), "is a FIFO")


def test_device_as_env_file_is_refused(tmp_path: Path) -> None:
    _file_refused(tmp_path, "/dev/zero", "is a character device")


def test_100_mb_env_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / ".env"
    with big.open("wb") as handle:  # sparse: 100 MB on paper, nothing on disk
        handle.truncate(100 * 1024 * 1024)
    big.chmod(0o600)
    _file_refused(tmp_path, str(big), "at most 1048576 bytes (1 MiB)")


def test_env_file_with_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    text = "".join(f"{k}={v}\n" for k, v in example_values().items())
    env.write_bytes(text.encode() + b"DKIM_SELECTOR=s\xff1\n")
    env.chmod(0o600)
    _file_refused(tmp_path, str(env), f".env (line {text.count(chr(10)) + 1}): is not valid UTF-8")


# ------------------------------------------------------------ finding 12: smaller gaps


def test_mapped_loopback_and_other_non_routable_edge_addresses(tmp_path: Path) -> None:
    cases = {
        "::ffff:127.0.0.1/128": "embeds an IPv4 address",
        "::ffff:100.64.0.10/128": "embeds an IPv4 address",
        "::1/128": "not loopback",
        "169.254.169.254/32": "link-local",
        "fe80::1/128": "link-local",
        "224.0.0.1/32": "multicast",
        "0.0.0.1/32": "not loopback or unspecified",
        "2002:7f00:1::/128": "embeds an IPv4 address",
    }
    for number, (addr, words) in enumerate(cases.items()):
        work = tmp_path / str(number)
        work.mkdir()
        values = example_values()
        values["EDGE_TAILNET_ADDR"] = addr
        refused(work, values, "render", expect={"EDGE_TAILNET_ADDR": words})


def test_blank_and_invisible_secrets_are_refused(tmp_path: Path) -> None:
    values = example_values()
    values["STALWART_RECOVERY_ADMIN"] = " " * 8
    values["STALWART_DB_PASSWORD"] = "\u200b" * 8
    values["STALWART_REDIS_PASSWORD"] = "\u00a0" * 8
    values["STALWART_S3_SECRET_KEY"] = "pass word with spaces"
    refused(
        tmp_path,
        values,
        "render",
        expect={
            "STALWART_RECOVERY_ADMIN": "whitespace around it",
            "STALWART_DB_PASSWORD": "invisible format character",
            "STALWART_REDIS_PASSWORD": "whitespace around it",
            "STALWART_S3_SECRET_KEY": "printable ASCII without spaces",
        },
        hidden=("pass word",),
    )


COMPOSE_REFUSES = ["Tailwart-Mail", "tailwart.mail", "_tailwart", "-tailwart", "tail wart"]


def test_compose_project_names_compose_refuses_are_refused(tmp_path: Path) -> None:
    for number, name in enumerate(COMPOSE_REFUSES):
        work = tmp_path / str(number)
        work.mkdir()
        values = example_values()
        values["COMPOSE_PROJECT"] = name
        refused(work, values, "up", "--dry-run", expect={"COMPOSE_PROJECT": "compose's rule"})


def test_compose_itself_refuses_those_project_names_and_accepts_ours() -> None:
    """The oracle for the rule above: the real compose loader, not our regex."""
    binary = TOOL_CACHE / "tools" / "compose-v2.40.3" / "docker-compose"
    need(binary.is_file(), f"compose loader not built at {binary} (scripts/setup/50-mailbox.sh)")

    def loads(name: str) -> bool:
        proc = subprocess.run(
            [str(binary), "-f", "-", "-p", name, "config", "--quiet"],
            input="services:\n  a:\n    image: busybox:1\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
        )
        return proc.returncode == 0

    assert loads(BY_NAME["COMPOSE_PROJECT"].default or "")
    assert loads("1tailwart_mail-2")
    for name in COMPOSE_REFUSES:
        assert not loads(name), name


def test_names_with_a_final_dot_and_digit_only_hosts_are_refused(tmp_path: Path) -> None:
    """Found by the fuzz's real-tool pass: caddy refuses 'mail.example.org.' as a site
    address ("subject does not qualify for certificate"), so no kind accepts a final dot;
    and '10.1' or '0' would be read as IPv4 addresses by inet_aton."""
    values = example_values()
    values["MAIL_HOSTNAME"] = "mail.example.org."
    values["STALWART_DB_HOST"] = "postgres.tail1234.ts.net."
    values["STALWART_REDIS_HOST"] = "10.1"
    values["EDGE_HOSTS"] = "root@10.1"
    refused(
        tmp_path,
        values,
        "render",
        expect={
            "MAIL_HOSTNAME": "final dot",
            "STALWART_DB_HOST": "final dot",
            "STALWART_REDIS_HOST": "all-digit label",
            "EDGE_HOSTS": "digits and dots",
        },
    )


def test_readme_states_each_kinds_size_limit() -> None:
    from tailwart.settings import Kind

    readme = (ROOT / "docs" / "reference" / "env.md").read_text()
    stated: dict[str, int] = {}
    for row in re.findall(r"^\| (.+) \|$", readme, flags=re.MULTILINE):
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)]
        for label, limit in zip(cells[::2], cells[1::2], strict=False):
            if limit.isdigit():
                stated[label] = int(limit)
    assert {kind.label: kind.limit for kind in Kind} == {
        kind.label: stated.get(kind.label) for kind in Kind
    }


def test_a_relay_login_may_be_an_email_address_but_not_hostile(tmp_path: Path) -> None:
    values = example_values()
    values.update(
        {
            "STALWART_SMARTHOST": "smtp.relay.example.net:587",
            "STALWART_SMARTHOST_USER": "postmaster@mg.example.org",
            "STALWART_SMARTHOST_PASSWORD": secrets.token_hex(16),
        }
    )
    ok = inv(tmp_path, "render", env_file=write(tmp_path / ".env", values))
    assert ok.returncode == 0, ok.stderr
    shutil.rmtree(tmp_path / "caddy")
    values["STALWART_SMARTHOST_USER"] = "user'; DROP ROLE x; --@example.org"
    refused(tmp_path, values, "render", expect={"STALWART_SMARTHOST_USER": "e-mail address"})


def _tasks_reading_env() -> list[list[str]]:
    """Every task that takes --env-file, as an operator would call it (dry run if it has one)."""
    import importlib.util
    import inspect

    spec = importlib.util.spec_from_file_location("tailwart_tasks_for_test", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from invoke.collection import Collection

    calls = []
    collection = Collection.from_module(module)
    for name in sorted(collection.task_names):
        params = inspect.signature(collection[name].body).parameters
        if "env_file" not in params:
            continue
        args = [name]
        if "dry_run" in params:
            args.append("--dry-run")
        if name == "acl":
            args.append("--tailscale")
        calls.append(args)
    return calls


TASKS_READING_ENV = _tasks_reading_env()


def test_every_task_reading_env_is_covered() -> None:
    names = {call[0] for call in TASKS_READING_ENV}
    assert {"render", "check", "up", "bootstrap", "acl", "deploy-edge", "doctor"} <= names


@pytest.mark.parametrize("call", TASKS_READING_ENV, ids=[c[0] for c in TASKS_READING_ENV])
def test_every_task_refuses_a_hostile_env_before_doing_anything(
    tmp_path: Path, call: list[str]
) -> None:
    values = example_values()
    values["MAILBOX_FQDN"] = "stalwart.tail1234.ts.net\n"
    values["STALWART_DB_HOST"] = "::1%x 5432;touch pwned;true"
    values["TS_API_URL"] = "http://127.0.0.1:9"  # loopback, were it ever reached
    shutil.copy2(ROOT / "acl-snippet.hujson", tmp_path / "acl-snippet.hujson")
    refused(
        tmp_path,
        values,
        *call,
        expect={"MAILBOX_FQDN": "U+000A", "STALWART_DB_HOST": "zone id"},
        hidden=secret_values(values),
    )
