"""Exact docker command lines of `inv up / down / ps / logs / restart` (invoke.MockContext)."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.runners import Result

from tailwart.checks import CheckContext
from tailwart.checks.run import collect
from tailwart.errors import UsageError
from tailwart.findings import Finding
from tailwart.mailbox.errors import MailboxError, StackRefused
from tailwart.mailbox.stack import Stack
from tailwart.settings import Settings, from_mapping
from tailwart.settings.derived import compose_environment
from tailwart.settings.example import example_settings
from tests.support.mailbox_fakes import (
    BASE,
    DAEMON,
    INSPECT,
    PRECONDITIONS,
    PS,
    STATUS,
    FakeClock,
    calls,
    commands,
    edit,
    fixture,
    inspected,
    mock,
    ps,
    work_tree,
)

UP = f"{BASE} up -d"
DRY_RUN = "dry run: nothing runs. The docker commands, in order:"
LOGS_STALWART = f"{BASE} logs --no-color --tail 30 stalwart"


def compose_checks(ctx: CheckContext) -> list[Finding]:
    """Only tailwart's compose rules: the other check modules have their own tests."""
    return collect(ctx, ("compose_rules",))


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return work_tree(tmp_path, monkeypatch)


@pytest.fixture
def settings() -> Settings:
    return example_settings()


class Output:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def plan(self) -> list[str]:
        """The lines from the dry-run header on (warnings of the checks come before)."""
        return self.lines[self.lines.index(DRY_RUN) :]


def stack(
    c: MockContext,
    settings: Settings,
    root: Path,
    clock: FakeClock | None = None,
    out: Output | None = None,
) -> Stack:
    clock = clock or FakeClock()
    out = out if out is not None else Output()
    return Stack(c, settings, root, ".env", out=out, err=out, clock=clock.clock, sleep=clock.sleep)


# ---------------------------------------------------------------- up


def test_up_runs_compose_waits_and_reports_the_node(tree: Path, settings: Settings) -> None:
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(""),
            PS: [ps("starting"), ps("healthy")],
            INSPECT: [inspected("starting"), inspected("healthy")],
            STATUS: Result(fixture("tailscale-status.json")),
        }
    )
    out = Output()
    clock = FakeClock()
    stack(c, settings, tree, clock, out).up(timeout=60, checks=compose_checks)
    assert commands(c) == [
        DAEMON,
        "docker compose version --short",
        UP,
        PS,
        INSPECT,
        PS,
        INSPECT,
        STATUS,
    ]
    assert clock.slept == [5]
    assert f"$ {UP}" in out.lines
    assert (
        "mailbox healthy after 5s: ts-stalwart: running, health healthy; stalwart: "
        "running, health healthy" in out.lines
    )
    assert (
        "sidecar node: stalwart.tail1234.ts.net (100.101.102.103, "
        "fd7a:115c:a1e0::6901:6667)" in out.lines
    )


def test_up_passes_the_compose_environment_not_command_line_secrets(
    tree: Path, settings: Settings
) -> None:
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(""),
            PS: ps("healthy"),
            INSPECT: inspected("healthy"),
            STATUS: Result(fixture("tailscale-status.json")),
        }
    )
    stack(c, settings, tree).up(checks=compose_checks)
    up_call = calls(c)[2]
    assert up_call.args[0] == UP
    env = up_call.kwargs["env"]
    # defaults and derived values are present, so the ${X:?} guards never fire
    assert env == compose_environment(settings)
    assert env["STALWART_PUBLIC_URL"] == f"https://{settings['MAIL_HOSTNAME']}"
    assert env["COMPOSE_PROJECT"] == "tailwart-mail"
    assert all(
        settings[k] not in call.args[0]
        for call in calls(c)
        for k in ("STALWART_DB_PASSWORD", "TS_OAUTH_CLIENT_SECRET")
    )


def test_up_warns_when_the_sidecar_came_back_as_stalwart_1(tree: Path, settings: Settings) -> None:
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(""),
            PS: ps("healthy"),
            INSPECT: inspected("healthy"),
            STATUS: Result(fixture("tailscale-status-renamed.json")),
        }
    )
    out = Output()
    stack(c, settings, tree, out=out).up(checks=compose_checks)
    assert any(
        line.startswith("warning: the sidecar registered as 'stalwart-1'") for line in out.lines
    )


def test_up_timeout_names_the_container_its_health_log_and_30_log_lines(
    tree: Path, settings: Settings
) -> None:
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(""),
            PS: ps("unhealthy"),
            INSPECT: inspected("unhealthy"),
            LOGS_STALWART: Result("stalwart-1  | store.postgres-error: authentication failed\n"),
        }
    )
    clock = FakeClock()
    with pytest.raises(MailboxError) as raised:
        stack(c, settings, tree, clock).up(timeout=20, checks=compose_checks)
    assert raised.value.exit_code == 1
    message = str(raised.value)
    assert message.startswith("mailbox not healthy after 20s: stalwart")
    assert "stalwart (tailwart-mail-stalwart-1): running, health unhealthy" in message
    assert "health log (last 3):" in message
    assert "store.postgres-error: authentication failed" in message
    assert commands(c)[-1] == LOGS_STALWART
    assert STATUS not in commands(c)  # no identity report for a broken stack


def test_up_reports_at_once_when_compose_gives_up_on_the_sidecar(
    tree: Path, settings: Settings
) -> None:
    logs_sidecar = f"{BASE} logs --no-color --tail 30 ts-stalwart"
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(
                stderr="dependency failed to start: container "
                "tailwart-mail-ts-stalwart-1 exited (1)",
                exited=1,
            ),
            PS: ps("exited"),
            INSPECT: inspected("exited"),
            logs_sidecar: Result(
                "ts-stalwart-1  | requested tags [tag:stalwart] are invalid or not permitted\n"
            ),
            LOGS_STALWART: Result(""),
        }
    )
    clock = FakeClock()
    with pytest.raises(MailboxError) as raised:
        stack(c, settings, tree, clock).up(checks=compose_checks)
    assert clock.slept == []
    assert "requested tags [tag:stalwart] are invalid" in str(raised.value)
    assert commands(c)[-3:] == [INSPECT, logs_sidecar, LOGS_STALWART]


def test_up_dry_run_prints_the_exact_commands_and_runs_nothing(
    tree: Path, settings: Settings
) -> None:
    c = mock({})
    out = Output()
    stack(c, settings, tree, out=out).up(dry_run=True, timeout=90, checks=compose_checks)
    assert calls(c) == []
    assert out.plan[:4] == [
        "dry run: nothing runs. The docker commands, in order:",
        f"  {DAEMON}",
        "  docker compose version --short",
        f"  {UP}",
    ]
    assert f"    {PS}" in out.lines
    assert "    docker inspect <ts-stalwart container> <stalwart container>" in out.lines
    assert f"    {STATUS}" in out.lines


# ---------------------------------------------------------------- refusals before any docker


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        (
            "    network_mode: service:ts-stalwart\n",
            '    network_mode: service:ts-stalwart\n    ports:\n      - "25:25"\n',
            "compose.stalwart-ports",
        ),
        (
            "      STALWART_DB_PASSWORD: ${STALWART_DB_PASSWORD:?"
            "STALWART_DB_PASSWORD is required}\n",
            "",
            "compose.env-passed",
        ),
        ("services:\n", "services:\n  - [unclosed\n", "compose.yaml"),
    ],
    ids=["ports-on-stalwart", "variable-missing", "broken-yaml"],
)
@pytest.mark.parametrize("task", ["up", "restart"])
def test_broken_stack_is_refused_before_any_docker_command(
    tree: Path, settings: Settings, old: str, new: str, finding: str, task: str
) -> None:
    edit(tree, old, new)
    c = mock({})  # any docker command would raise NotImplementedError
    out = Output()
    with pytest.raises(StackRefused) as raised:
        getattr(stack(c, settings, tree, out=out), task)(checks=compose_checks)
    assert raised.value.exit_code == 2
    assert "no docker command was run" in str(raised.value)
    assert finding in out.text
    assert calls(c) == []


def test_an_error_of_any_check_module_refuses(tree: Path, settings: Settings) -> None:
    def failing(ctx: CheckContext) -> list[Finding]:
        return [Finding.error("proxy.trust", "trusts 100.64.0.0/10", "trust the edge only")]

    c = mock({})
    with pytest.raises(StackRefused, match="found 1 error"):
        stack(c, settings, tree).up(checks=failing)
    assert calls(c) == []


def test_a_host_without_git_still_starts_the_mailbox(
    tree: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repository hygiene never blocks `up`: with no git on PATH it is one warning."""
    monkeypatch.setenv("PATH", str(tree.parent / "bin"))  # the stub docker only: no git
    out = Output()
    stack(mock({}), settings, tree, out=out).up(
        dry_run=True, checks=lambda ctx: collect(ctx, ("compose_rules", "hygiene"))
    )
    assert "warning: hygiene.git: git is not installed here" in out.text
    assert out.plan[0] == DRY_RUN


def test_hygiene_errors_and_crashes_are_warnings_for_up(
    tree: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from tailwart.checks import hygiene

    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    (tree / ".env").write_text("X=1\n")
    subprocess.run(["git", "-C", str(tree), "add", "-f", ".env"], check=True)
    hygiene_only = ("hygiene",)
    found = {f.id: f for f in collect(CheckContext(settings, tree), hygiene_only)}
    assert found["hygiene.tracked"].status == "error"  # an error for `inv check`...
    out = Output()
    stack(mock({}), settings, tree, out=out).up(
        dry_run=True, checks=lambda ctx: collect(ctx, hygiene_only)
    )
    assert "warning: hygiene.tracked: tracked by git: .env" in out.text  # ...a warning here

    def crash(ctx: CheckContext) -> list[Finding]:
        raise FileNotFoundError("git")

    monkeypatch.setattr(hygiene, "run", crash)
    out = Output()
    stack(mock({}), settings, tree, out=out).up(
        dry_run=True, checks=lambda ctx: collect(ctx, hygiene_only)
    )
    assert "warning: hygiene.crashed: check crashed: FileNotFoundError" in out.text
    assert out.plan[0] == DRY_RUN


def test_a_crashed_check_refuses_up_with_exit_1(tree: Path, settings: Settings) -> None:
    c = mock({})
    out = Output()
    with pytest.raises(MailboxError, match="a static check crashed") as raised:
        stack(c, settings, tree, out=out).up(
            checks=lambda ctx: collect(ctx, ("compose_rules", "no_such_module"))
        )
    assert raised.value.exit_code == 1  # tailwart's failure, not the operator's input
    assert "no_such_module.crashed" in out.text
    assert calls(c) == []


# ---------------------------------------------------------------- down, ps, logs


def test_down_keeps_volumes(tree: Path, settings: Settings) -> None:
    c = mock({**PRECONDITIONS, f"{BASE} down": Result("")})
    stack(c, settings, tree).down()
    assert commands(c)[-1] == f"{BASE} down"


def test_down_volumes_asks_first_and_stops_on_no(tree: Path, settings: Settings) -> None:
    asked: list[str] = []

    def answer_no(question: str) -> bool:
        asked.append(question)
        return False

    c = mock({})
    with pytest.raises(UsageError, match="not confirmed"):
        stack(c, settings, tree).down(volumes=True, confirm=answer_no)
    assert asked == [
        "delete the volume tailwart-mail_stalwart-data (Stalwart's local data, "
        "and the web admin's local state)?"
    ]
    assert calls(c) == []


def test_down_volumes_with_yes(tree: Path, settings: Settings) -> None:
    c = mock({**PRECONDITIONS, f"{BASE} down --volumes": Result("")})
    stack(c, settings, tree).down(
        volumes=True, yes=True, confirm=lambda q: pytest.fail("asked despite --yes")
    )
    assert commands(c)[-1] == f"{BASE} down --volumes"


def test_down_volumes_without_a_terminal_needs_yes(
    tree: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="pass --yes"):
        stack(mock({}), settings, tree).down(volumes=True)


def test_ps_shows_containers_health_and_the_image_tag(tree: Path, settings: Settings) -> None:
    # the recorded listing runs v0.15.5: pin the same, so the tag line shows no mismatch
    from tailwart.settings.example import example_values

    settings = from_mapping({**example_values(), "STALWART_IMAGE": "stalwartlabs/stalwart:v0.15.5"})
    c = mock({**PRECONDITIONS, PS: ps("unhealthy")})
    out = Output()
    stack(c, settings, tree, out=out).ps()
    assert commands(c)[-1] == PS
    table = out.text.splitlines()
    assert table[0].split() == ["SERVICE", "CONTAINER", "STATE", "HEALTH", "IMAGE"]
    assert table[1].split() == [
        "stalwart",
        "tailwart-mail-stalwart-1",
        "running",
        "unhealthy",
        "stalwartlabs/stalwart:v0.15.5",
    ]
    assert table[-1] == (
        "stalwart image tag: v0.15.5 (pinned in .env: stalwartlabs/stalwart:v0.15.5)"
    )


def test_ps_of_a_stopped_stack(tree: Path, settings: Settings) -> None:
    c = mock({**PRECONDITIONS, PS: Result("")})
    out = Output()
    stack(c, settings, tree, out=out).ps()
    assert out.lines == ["the mailbox is not running (no containers) → `inv up`"]


@pytest.mark.parametrize(
    ("service", "follow", "since", "expected"),
    [
        ("", False, "", f"{BASE} logs --no-color"),
        ("stalwart", False, "", f"{BASE} logs --no-color stalwart"),
        ("ts-stalwart", True, "10m", f"{BASE} logs --no-color --follow --since 10m ts-stalwart"),
    ],
)
def test_logs_command_lines(
    tree: Path, settings: Settings, service: str, follow: bool, since: str, expected: str
) -> None:
    c = mock({**PRECONDITIONS, expected: Result("")})
    stack(c, settings, tree).logs(service, follow=follow, since=since)
    assert commands(c)[-1] == expected


def test_logs_of_an_unknown_service_is_bad_input(tree: Path, settings: Settings) -> None:
    with pytest.raises(UsageError, match="unknown service 'postgres'"):
        stack(mock({}), settings, tree).logs("postgres")


# ---------------------------------------------------------------- restart


def test_restart_stalwart_alone(tree: Path, settings: Settings) -> None:
    restart = f"{BASE} restart stalwart"
    c = mock(
        {
            **PRECONDITIONS,
            restart: Result(""),
            PS: ps("healthy"),
            INSPECT: inspected("healthy"),
            STATUS: Result(fixture("tailscale-status.json")),
        }
    )
    stack(c, settings, tree).restart(checks=compose_checks)
    assert commands(c)[2:4] == [restart, PS]
    assert not any(cmd.endswith(("restart", "restart ts-stalwart")) for cmd in commands(c))


@pytest.mark.parametrize("target", ["ts-stalwart", "all"])
def test_restart_with_the_sidecar_recreates_both_in_order(
    tree: Path, settings: Settings, target: str
) -> None:
    steps = [
        f"{BASE} stop stalwart",
        f"{BASE} up -d --force-recreate ts-stalwart",
        f"{BASE} up -d --force-recreate stalwart",
    ]
    c = mock(
        {
            **PRECONDITIONS,
            **{s: Result("") for s in steps},
            PS: ps("healthy"),
            INSPECT: inspected("healthy"),
            STATUS: Result(fixture("tailscale-status.json")),
        }
    )
    stack(c, settings, tree).restart(target, checks=compose_checks)
    assert commands(c)[2:5] == steps
    assert not any(" restart" in cmd for cmd in commands(c))


def test_restart_unknown_target_is_bad_input(tree: Path, settings: Settings) -> None:
    with pytest.raises(UsageError, match="choose stalwart, ts-stalwart, all"):
        stack(mock({}), settings, tree).restart("postgres", checks=compose_checks)


def test_restart_dry_run(tree: Path, settings: Settings) -> None:
    out = Output()
    c = mock({})
    stack(c, settings, tree, out=out).restart("all", dry_run=True, checks=compose_checks)
    assert out.plan[3:6] == [
        f"  {BASE} stop stalwart",
        f"  {BASE} up -d --force-recreate ts-stalwart",
        f"  {BASE} up -d --force-recreate stalwart",
    ]
    assert calls(c) == []


# ---------------------------------------------------------------- secrets and failed steps


def test_failure_report_masks_secrets_quoted_by_container_logs(
    tree: Path, settings: Settings
) -> None:
    password = settings["STALWART_REDIS_PASSWORD"]
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(""),
            PS: ps("unhealthy"),
            INSPECT: inspected("unhealthy"),
            LOGS_STALWART: Result(f"stalwart-1  | redis://:{password}@redis:6379/3 refused\n"),
        }
    )
    with pytest.raises(MailboxError) as raised:
        stack(c, settings, tree).up(timeout=0, checks=compose_checks)
    assert password not in str(raised.value)
    assert "redis://:<secret>@redis:6379/3 refused" in str(raised.value)


def test_streamed_output_is_masked_even_when_a_secret_spans_two_chunks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from invoke.context import Context

    from tailwart.mailbox.compose import RedactingStream, Runner

    secret = "s3cr3t-value-42"
    out = Runner(Context(), secrets=(secret,), show=lambda _: None).stream(
        ["sh", "-c", f"printf 'url=%s\\nnext' '{secret}'"]
    )
    assert out.ok
    assert capsys.readouterr().out == "url=<secret>\nnext"

    import io

    target = io.StringIO()
    stream = RedactingStream(target, (secret,))
    stream.write("a s3cr3t-")
    stream.flush()
    stream.write("value-42 b\ntail")
    stream.close()
    assert target.getvalue() == "a <secret> b\ntail"


def test_compose_failure_with_healthy_containers_says_so(tree: Path, settings: Settings) -> None:
    c = mock(
        {
            **PRECONDITIONS,
            UP: Result(stderr="network tailwart-mail_default: conflict\n", exited=1),
            PS: ps("healthy"),
            INSPECT: inspected("healthy"),
        }
    )
    with pytest.raises(MailboxError, match=r"docker compose up -d failed \(see its output"):
        stack(c, settings, tree).up(checks=compose_checks)


def test_restart_step_failure_reports_the_containers(tree: Path, settings: Settings) -> None:
    stop = f"{BASE} stop stalwart"
    recreate = f"{BASE} up -d --force-recreate ts-stalwart"
    c = mock(
        {
            **PRECONDITIONS,
            stop: Result(""),
            recreate: Result(exited=1),
            PS: ps("exited"),
            INSPECT: inspected("exited"),
            f"{BASE} logs --no-color --tail 30 ts-stalwart": Result("boot: failed\n"),
            LOGS_STALWART: Result(""),
        }
    )
    with pytest.raises(
        MailboxError, match="ts-stalwart \\(tailwart-mail-ts-stalwart-1\\): exited with code 1"
    ):
        stack(c, settings, tree).restart("ts-stalwart", checks=compose_checks)
    assert f"{BASE} up -d --force-recreate stalwart" not in commands(c)


def test_warnings_of_the_checks_are_shown_but_do_not_refuse(tree: Path, settings: Settings) -> None:
    def warning(ctx: CheckContext) -> list[Finding]:
        return [Finding.warning("compose.image-pinned", "stalwart 0.16.17", "pin v0.16.18")]

    out = Output()
    stack(mock({}), settings, tree, out=out).up(dry_run=True, checks=warning)
    assert out.lines[0] == "warning: compose.image-pinned: stalwart 0.16.17 → pin v0.16.18"
    assert out.lines[1] == "dry run: nothing runs. The docker commands, in order:"


# ---------------------------------------------------------------- first start


def test_first_start_control_recreates_stalwart_alone_in_recovery_then_normal(
    tree: Path, settings: Settings
) -> None:
    from tailwart.mailbox.stack import ComposeControl

    recreate = f"{BASE} up -d --force-recreate stalwart"
    stop = f"{BASE} stop stalwart"
    c = mock(
        {
            recreate: [Result(""), Result("")],
            stop: Result(""),
            PS: ps("healthy"),
            INSPECT: inspected("healthy"),
        }
    )
    control = ComposeControl(stack(c, settings, tree), timeout=60)
    control.start(recovery=True)
    assert calls(c)[0].kwargs["env"]["STALWART_RECOVERY_MODE"] == "1"
    control.stop()
    control.start(recovery=False)
    ran = commands(c)
    assert [r for r in ran if r in (recreate, stop)] == [recreate, stop, recreate]
    last_up = [call for call in calls(c) if call.args[0] == recreate][-1]
    assert last_up.kwargs["env"]["STALWART_RECOVERY_MODE"] == ""
    assert not any("ts-stalwart" in r.split(BASE)[-1] for r in ran if r.startswith(BASE))
