"""The merge rules, the inserted layout, and bad input (exit 2, all problems at once)."""

from __future__ import annotations

import pytest

from tailwart.policy.errors import PolicyInputError
from tailwart.policy.merge import merge

SNIPPET = """{
	"tagOwners": {"tag:stalwart": ["autogroup:admin", "tag:stalwart"]},
	"hosts": {"pg": "100.64.0.5"},
	"acls": [
		{"action": "accept", "src": ["tag:reverse-proxy"], "dst": ["tag:stalwart:25,465"]},
	],
}
"""


def test_exact_output_for_a_tab_indented_policy() -> None:
    policy = (
        "// mine\n"
        "{\n"
        '\t"tagOwners": {\n'
        '\t\t"tag:stalwart": ["autogroup:admin"], // who tags the mailbox\n'
        '\t\t"tag:reverse-proxy": ["autogroup:admin"],\n'
        "\t},\n"
        '\t"acls": [\n'
        '\t\t{"action": "accept", "src": ["*"], "dst": ["tag:web:443"]},\n'
        "\t],\n"
        "}\n"
    )
    result = merge(policy, SNIPPET)
    assert result.after == (
        "// mine\n"
        "{\n"
        '\t"tagOwners": {\n'
        '\t\t"tag:stalwart": ["autogroup:admin", /* tailwart */ "tag:stalwart"], '
        "// who tags the mailbox\n"
        '\t\t"tag:reverse-proxy": ["autogroup:admin"],\n'
        "\t},\n"
        '\t"acls": [\n'
        '\t\t{"action": "accept", "src": ["*"], "dst": ["tag:web:443"]},\n'
        "\t\t// added by tailwart\n"
        '\t\t{"action": "accept", "src": ["tag:reverse-proxy"], "dst": ["tag:stalwart:25,465"]},\n'
        "\t],\n"
        "\t// added by tailwart\n"
        '\t"hosts": {\n'
        '\t\t"pg": "100.64.0.5",\n'
        "\t},\n"
        "}\n"
    )
    assert result.additions == [
        'tagOwners.tag:stalwart: owner "tag:stalwart"',
        'hosts: {"pg": "100.64.0.5"}',
        'acls: entry {"action": "accept", "src": ["tag:reverse-proxy"], '
        '"dst": ["tag:stalwart:25,465"]}',
    ]


def test_conflicting_map_value_is_reported_and_kept() -> None:
    policy = '{\n  "hosts": {\n    "pg": "100.64.9.9"\n  }\n}\n'
    result = merge(policy, SNIPPET)
    assert '"pg": "100.64.9.9"' in result.after
    assert "100.64.0.5" not in result.after
    [conflict] = result.conflicts
    assert conflict.path == "hosts.pg"
    assert conflict.line == 3
    assert 'the policy has "100.64.9.9", the snippet wants "100.64.0.5"' in str(conflict)


def test_structurally_equal_entry_is_not_appended_again() -> None:
    # same rule with other key order and layout
    policy = """{
  "tagOwners": {"tag:stalwart": ["tag:stalwart", "autogroup:admin"]},
  "hosts": {"pg": "100.64.0.5"},
  "acls": [
    {
      "dst": ["tag:stalwart:25,465"],
      "src": ["tag:reverse-proxy"],
      "action": "accept"
    }
  ]
}
"""
    result = merge(policy, SNIPPET)
    assert not result.changed
    assert result.diff() == ""


def test_merging_twice_is_merging_once() -> None:
    once = merge("{}\n", SNIPPET).after
    assert merge(once, SNIPPET).after == once
    assert "// added by tailwart" in once


def test_policy_with_neither_acls_nor_grants_gets_the_snippets_section() -> None:
    grants_snippet = '{"grants": [{"src": ["tag:a"], "dst": ["tag:b"], "ip": ["tcp:25"]}]}'
    result = merge('{\n\t"groups": {},\n}\n', grants_snippet)
    assert '"grants": [' in result.after
    assert '"acls"' not in result.after


def test_snippet_grants_become_acls_in_an_acls_only_policy() -> None:
    grants_snippet = (
        '{"grants": [{"src": ["tag:a"], "dst": ["tag:b"], "ip": ["tcp:25", "tcp:465"]}]}'
    )
    policy = '{\n\t"acls": [\n\t\t{"action": "accept", "src": ["*"], "dst": ["*:22"]},\n\t],\n}\n'
    result = merge(policy, grants_snippet)
    assert (
        '{"action": "accept", "src": ["tag:a"], "dst": ["tag:b:25,465"], "proto": "tcp"}'
        in result.after
    )
    assert '"grants"' not in result.after
    assert merge(result.after, grants_snippet).changed is False


def test_crlf_policy_stays_crlf() -> None:
    policy = '{\r\n\t"acls": [\r\n\t\t// keep me\r\n\t],\r\n}\r\n'
    after = merge(policy, SNIPPET).after
    assert after.count("\n") == after.count("\r\n")
    assert "\t\t// keep me\r\n" in after


def test_duplicate_keys_are_an_error_naming_the_lines() -> None:
    policy = (
        '{\n  "acls": [],\n  "groups": {},\n  "acls": [],\n'
        '  "hosts": {"a": "1.2.3.4", "a": "1.2.3.5"}\n}\n'
    )
    with pytest.raises(PolicyInputError) as err:
        merge(policy, SNIPPET, "policy.hujson")
    message = str(err.value)
    assert 'line 4: duplicate key "acls" in the top-level object (first on line 2)' in message
    assert 'line 5: duplicate key "a" in hosts (first on line 5)' in message
    assert err.value.exit_code == 2


def test_json5_only_syntax_is_rejected_with_lines() -> None:
    policy = '{\n  acls: [],\n  "hosts": {"a": \'x\'},\n  "n": 0x10,\n}\n'
    with pytest.raises(PolicyInputError) as err:
        merge(policy, SNIPPET, "policy.hujson")
    message = str(err.value)
    assert "line 2: unquoted key acls" in message
    assert "line 3: single-quoted string" in message
    assert "line 4: hex or octal number" in message


def test_duplicate_key_in_the_snippet_is_an_error_too() -> None:
    with pytest.raises(PolicyInputError, match=r"(?s)acl-snippet.hujson.*line 1: duplicate key"):
        merge("{}", '{"hosts": {}, "hosts": {}}')


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(PolicyInputError, match="line 3"):
        merge('{\n  "acls": [\n  "groups": {}\n}\n', SNIPPET)


def test_section_of_the_wrong_type_is_bad_input() -> None:
    with pytest.raises(PolicyInputError, match=r"line 1: acls must be an array"):
        merge('{"acls": {}}', SNIPPET)


def test_inserted_text_is_hujson_not_json5() -> None:
    snippet = (
        '{"hosts": {"quote\\"d": "100.64.0.1"}, "tests": [{"src": "ü@example.com", "accept": []}]}'
    )
    after = merge('{\n  "acls": []\n}\n', snippet).after
    assert '"quote\\"d": "100.64.0.1"' in after
    assert '"src": "ü@example.com"' in after
    assert "'" not in after
