"""One masking module, one name per meaning (issue 22): each name does what its row of
masking's table says, and no other module keeps a masking function of its own.

The oracles are literal strings written here, never masking's own output.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import tailwart.masking as masking
from tailwart.masking import (
    MASK,
    hide_credentials,
    hide_jmap_secrets,
    hide_secrets,
    hide_secrets_in_tree,
    hide_sensitive,
    replace_secrets,
)
from tailwart.settings import mask_value

SRC = Path(masking.__file__).resolve().parent
PASSWORD = "Correct-Horse-9"


def test_hide_secrets_masks_known_values_only() -> None:
    text = f"login {PASSWORD} failed; Bearer not-a-known-value"
    assert hide_secrets(text, [PASSWORD]) == f"login {MASK} failed; Bearer not-a-known-value"


def test_hide_credentials_masks_shapes_without_knowing_values() -> None:
    text = "GET https://alice:pw-unknown@api.example/x with Bearer abc.def and tskey-api-123"
    assert hide_credentials(text) == (
        f"GET https://{MASK}@api.example/x with Bearer {MASK} and tskey-{MASK}"
    )
    assert hide_credentials("db_password=hunter22 host=db") == f"db_password={MASK} host=db"


def test_hide_sensitive_is_both_known_values_and_shapes() -> None:
    text = f"said {PASSWORD}; Authorization: Basic dXNlcjpwYXNz"
    assert hide_sensitive(text, [PASSWORD]) == f"said {MASK}; Authorization: {MASK}"


def test_hide_secrets_in_tree_masks_strings_and_keys_at_any_depth() -> None:
    tree = {"a": [f"x{PASSWORD}y", 7, None], PASSWORD: {"deep": PASSWORD}, "n": 1.5}
    assert hide_secrets_in_tree(tree, [PASSWORD]) == {
        "a": [f"x{MASK}y", 7, None],
        MASK: {"deep": MASK},
        "n": 1.5,
    }


def test_hide_jmap_secrets_masks_inline_values_and_url_passwords_as_stalwart_does() -> None:
    value = {
        "url": "redis://:s3cret-pass@10.0.0.1:6379/5",
        "secret": {"@type": "Value", "secret": "plain", "other": "kept"},
        "ref": {"@type": "EnvironmentVariable", "variableName": "PW"},
        "list": ({"@type": "Value", "value": "v"}, 3),
    }
    assert hide_jmap_secrets(value) == {
        "url": "redis://:****@10.0.0.1:6379/5",
        "secret": {"@type": "Value", "secret": "****", "other": "kept"},
        "ref": {"@type": "EnvironmentVariable", "variableName": "PW"},
        "list": [{"@type": "Value", "value": "****"}, 3],
    }
    assert hide_jmap_secrets([1, "a"], leaf=lambda v: f"<{v}>") == ["<1>", "a"]


def test_replace_secrets_puts_named_placeholders_longest_first() -> None:
    short, long = "abcdefgh", "abcdefgh-and-more"
    value = {"k": f"{long} {short}", "n": [short]}
    out = replace_secrets(value, {short: "scrubbed-A", long: "scrubbed-B"})
    assert out == {"k": "scrubbed-B scrubbed-A", "n": ["scrubbed-A"]}
    assert json.dumps(out).count("abcdefgh") == 0


def test_mask_value_shows_a_secret_by_length_and_cuts_long_values() -> None:
    assert mask_value("STALWART_MANAGEMENT_PASSWORD", PASSWORD) == "<secret, 15 chars>"
    url = "https://user:pw@example.org/"
    assert mask_value("STALWART_MANAGEMENT_URL", url) == (
        f"<URL with '@' (credentials?), {len(url)} chars, not shown>"
    )
    assert mask_value("MAIL_DOMAIN", "example.org") == "'example.org'"
    long = "x" * 60
    assert mask_value("MAIL_DOMAIN", long) == f"'{'x' * 48}'… (60 chars)"


def test_every_public_masking_function_is_in_the_modules_table() -> None:
    doc = masking.__doc__ or ""
    assert "``settings.mask_value(" in doc
    for name in ("hide_", "replace_secrets"):
        public = [n for n in dir(masking) if n.startswith(name) and callable(getattr(masking, n))]
        assert public, name
        for fn in public:
            assert f"``{fn}(" in doc, f"{fn} is missing from masking's table"


OLD_NAMES = {"mask_all", "mask_credentials", "redact", "scrub", "scrubbed", "masked", "mask"}


def test_no_module_defines_a_masking_function_under_an_old_name() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in OLD_NAMES:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert found == []
