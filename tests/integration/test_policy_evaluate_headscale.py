"""tailwart's policy evaluator (policy/evaluate.py) against headscale's real policy check.

The local Tailscale API server of the tests (fake_tailscale_api.py) and ``inv acl
--file`` judge policies with ``evaluate.py``; this module checks that judge
against an independent one: headscale v0.29.2's ``POST /api/v1/policy/check``,
on a server holding one node per tag and per user the corpus names, so that
every test of every policy resolves to real addresses and runs there.

For every corpus policy merged with the snippet (as ``inv acl --headscale``
sends it), both verdicts must agree: accepted or refused, and the same failing
``tests`` assertions (source, address, accept/deny). Tag owners are written
in headscale's dialect on both sides (``autogroup:admin`` → the user ``ops@``:
headscale has no admin role). Where the two must differ, the case is listed in
``MUST_DIFFER`` with the reason, and the test checks that headscale still
answers that way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tailwart.policy.evaluate import validate
from tailwart.policy.headscale_api import adapt_snippet
from tailwart.policy.hujson import Style, parse, render
from tailwart.policy.merge import merge
from tests.integration.test_acl_headscale import Headscale, running_headscale, world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "policy_corpus").glob("*.hujson"))
SNIPPET = (ROOT / "acl-snippet.hujson").read_text()

#: corpus file → (what headscale answers, why tailwart judges as Tailscale SaaS does)
MUST_DIFFER = {
    "06-postures.hujson": (
        'unknown field: "postures"',
        "device posture (postures, defaultSrcPosture, a test's srcPostureAttrs) is a "
        "Tailscale SaaS feature headscale does not have; evaluate.py checks it as Tailscale does",
    ),
    "11-approvers-nodeattrs-ipsets.hujson": (
        'unknown field: "disableIPv4"',
        "ipsets and the SaaS-only top-level settings (derpMap, disableIPv4, "
        "randomizeClientPort) are refused by headscale; Tailscale accepts them",
    ),
}


def headscale_dialect(text: str) -> str:
    return text.replace('"autogroup:admin"', '"ops@"')


def names(pattern: str) -> list[str]:
    found: dict[str, None] = {}
    for text in [SNIPPET, *(p.read_text() for p in CORPUS)]:
        found.update(dict.fromkeys(re.findall(pattern, text)))
    return list(found)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Headscale, str]]:
    """One headscale for the module: a node for every tag and user the corpus names."""
    with running_headscale(tmp_path_factory.mktemp("headscale")) as hs:
        world(hs, names(r'"(tag:[\w-]+)'), names(r"[\w.-]+@[\w-]+\.[\w.-]+"))
        key = hs.cli("apikeys", "create", "--expiration", "1h").stdout.strip().splitlines()[-1]
        yield hs, key


def headscale_verdict(server: tuple[Headscale, str], text: str) -> tuple[bool, str]:
    hs, key = server
    response = requests.post(
        f"{hs.url}/api/v1/policy/check",
        json={"policy": text},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code in (200, 400), response.text
    return response.status_code == 200, response.json().get("message", "")


HEADSCALE_FAILURE = re.compile(
    r"^(\S+) -> (\S+?)(?: \(\w+\))?: expected (ALLOWED|DENIED), got", re.MULTILINE
)


def headscale_failures(message: str) -> set[tuple[str, str, str]]:
    return {
        (src, dst, "accept" if want == "ALLOWED" else "deny")
        for src, dst, want in HEADSCALE_FAILURE.findall(message)
    }


def local_failures(text: str) -> tuple[bool, set[tuple[str, str, str]], list[str]]:
    report = validate(parse(text, "merged").value)
    failing = set()
    for failure in report.failures:
        for address, error in zip(failure.addresses, failure.errors, strict=False):
            failing.add((failure.src, address, "deny" if "want: Drop" in error else "accept"))
    return report.ok, failing, [str(p) for p in report.problems]


def merged_for_headscale(path: Path) -> str:
    adapted, _ = adapt_snippet(parse(SNIPPET, "snippet").value)
    snippet = render(adapted, Style(), "") + "\n"
    return headscale_dialect(merge(path.read_bytes().decode(), snippet, path.name).after)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_evaluate_agrees_with_headscale_on_the_merged_corpus(
    server: tuple[Headscale, str], path: Path
) -> None:
    text = merged_for_headscale(path)
    ours_ok, ours_failing, problems = local_failures(text)
    theirs_ok, message = headscale_verdict(server, text)
    if path.name in MUST_DIFFER:
        says, _why = MUST_DIFFER[path.name]
        assert ours_ok and not theirs_ok, (problems, message)
        assert says in message, message
        return
    assert (ours_ok, problems) == (theirs_ok, []), message
    assert ours_failing == headscale_failures(message), message


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_evaluate_agrees_with_headscale_on_the_corpus_before_the_merge(
    server: tuple[Headscale, str], path: Path
) -> None:
    text = headscale_dialect(path.read_bytes().decode())
    ours_ok, ours_failing, problems = local_failures(text)
    theirs_ok, message = headscale_verdict(server, text)
    if path.name in MUST_DIFFER:
        assert ours_ok and not theirs_ok and MUST_DIFFER[path.name][0] in message, message
        return
    assert (ours_ok, problems) == (theirs_ok, []), message
    assert ours_failing == headscale_failures(message), message


def test_the_snippet_deny_tests_fail_alike_when_nothing_leaves_them_out(
    server: tuple[Headscale, str],
) -> None:
    """The allow-all default with the snippet's tests kept whole: both judges refuse the
    same five deny assertions (why inv acl leaves them out)."""
    adapted, _ = adapt_snippet(parse(SNIPPET, "snippet").value)
    policy = parse((ROOT / "tests" / "policy_corpus" / "16-allow-all-json.hujson").read_text(), "x")
    whole = {**policy.value, **adapted, "acls": policy.value["acls"] + adapted["acls"]}
    text = render(whole, Style(), "") + "\n"
    ours_ok, ours_failing, _ = local_failures(text)
    theirs_ok, message = headscale_verdict(server, text)
    assert not ours_ok and not theirs_ok
    assert len(ours_failing) == 5
    assert ours_failing == headscale_failures(message), message
