"""HuJSON documents through json-five's model: parse, check, convert, render fragments.

HuJSON is JSON plus ``//`` and ``/* */`` comments and trailing commas. json-five
(pinned: its model API is not stable across minor releases) parses JSON5, a
superset, into a model that keeps every comment and every whitespace run, and
dumps it back byte for byte. This module adds what a policy merge needs on top:
all problems of a document at once (syntax, duplicate keys, JSON5-only syntax,
with line numbers), plain Python values, the file's layout style, and new
nodes rendered in that style.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import PolicyInputError

if TYPE_CHECKING:
    from json5.model import JSONArray, JSONObject, JSONText, Node, Value

#: arrays of scalars longer than this (in columns) are spread one item per line
WRAP_AT = 100
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


@dataclass
class Document:
    """A parsed HuJSON document: its text, its model and its plain value."""

    name: str
    text: str
    root: JSONText
    value: Any


def parse(text: str, name: str) -> Document:
    """Parse ``text`` keeping comments; raise PolicyInputError listing every problem."""
    root = parse_model(text, name)
    found = problems(root)
    if found:
        raise PolicyInputError(f"{name}: not valid HuJSON:\n" + "\n".join(f"  {p}" for p in found))
    return Document(name, text, root, plain(root.value))


#: deepest nesting accepted (a policy needs about 5; json-five's parser recurses per level)
MAX_DEPTH = 64
#: the only whitespace HuJSON (Go's tailscale/hujson, as headscale uses it) accepts
_JSON_WHITESPACE = frozenset(" \t\r\n")


def lexical_problems(text: str) -> list[str]:
    """What Go's hujson rejects although JSON5 (our parser) accepts it, with line numbers.

    Outside strings only JSON whitespace separates tokens: a byte order mark, NBSP,
    U+2028/U+2029, vertical tab, form feed or any other Unicode space or format
    character is an error there (JSON5 reads them as blanks or line ends: U+2028
    would even end a // comment early, so the two parsers would see different
    documents). Nesting deeper than MAX_DEPTH is refused before parsing.
    """
    import unicodedata

    found: list[str] = []
    line, depth, i, n = 1, 0, 0, len(text)
    if text.startswith("\ufeff"):
        found.append("line 1: byte order mark (U+FEFF) at the start; save the file without it")
        i = 1
    while i < n:
        ch = text[i]
        if ch == '"':  # a string: skip to its closing quote (JSON escapes)
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\n":
                    line += 1
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("//", i) or text.startswith("/*", i):
            end = text.find("\n", i) if text[i + 1] == "/" else text.find("*/", i + 2)
            end = n if end < 0 else end
            for c in text[i:end]:
                if c in "\u2028\u2029\x0b\x0c\x85":
                    found.append(
                        f"line {line}: {_char_name(c)} in a comment (Go's hujson and JSON5 "
                        "disagree where the comment ends)"
                    )
                elif c == "\n":
                    line += 1
            i = end
            continue
        elif ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                found.append(f"line {line}: nested deeper than {MAX_DEPTH} levels")
                return found
        elif ch in "]}":
            depth -= 1
        elif ch not in _JSON_WHITESPACE and (
            ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")
        ):
            found.append(
                f"line {line}: {_char_name(ch)} outside a string (HuJSON allows only space, "
                "tab and line breaks between tokens)"
            )
        i += 1
    return found


def _char_name(ch: str) -> str:
    import unicodedata

    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'control character').lower()}"


def parse_model(text: str, name: str) -> JSONText:
    """The json-five model of ``text``; a syntax error names the line."""
    import json5
    from json5.loader import ModelLoader
    from json5.utils import JSON5DecodeError

    if not text.strip():
        raise PolicyInputError(f"{name}: empty document (expected a HuJSON object)")
    lexical = lexical_problems(text)
    if lexical:
        raise PolicyInputError(
            f"{name}: not valid HuJSON:\n" + "\n".join(f"  {p}" for p in lexical)
        )
    try:
        root: JSONText = json5.loads(text, loader=ModelLoader())
    except RecursionError:
        raise PolicyInputError(f"{name}: nested too deeply") from None
    except JSON5DecodeError as exc:
        first = str(exc).splitlines()
        detail = next((line.strip() for line in first if "Syntax Error" in line), first[0])
        raise PolicyInputError(f"{name}: syntax error: {detail}") from None
    except Exception as exc:  # the lexer raises other errors on stray characters
        raise PolicyInputError(f"{name}: syntax error: {exc}") from None
    return root


def dump(root: JSONText) -> str:
    """Serialise a model (byte-identical to the input where it was not edited)."""
    import json5
    from json5.dumper import ModelDumper

    text: str = json5.dumps(root, dumper=ModelDumper())  # type: ignore[arg-type]
    return text


def key_name(key: Node) -> str:
    """The name of an object key node (quoted or, in JSON5, bare)."""
    from json5.model import Identifier, String

    if isinstance(key, String):
        return str(key.characters)
    if isinstance(key, Identifier):
        return str(key.name)
    raise TypeError(f"not a key: {key!r}")


def problems(root: JSONText) -> list[str]:
    """Duplicate keys and JSON5-only syntax, each with its line number, in document order."""
    from json5.model import (
        BooleanLiteral,
        DoubleQuotedString,
        Float,
        Identifier,
        Infinity,
        Integer,
        JSONArray,
        JSONObject,
        NaN,
        NullLiteral,
        SingleQuotedString,
        UnaryOp,
    )

    found: list[tuple[int, str]] = []

    def visit(node: Node, path: str) -> None:
        line = node.lineno or 0
        if isinstance(node, JSONObject):
            seen: dict[str, int] = {}
            folded: dict[str, tuple[str, int]] = {}  # top level: keys match case-insensitively
            for key, value in node.key_value_pairs:
                kline = key.lineno or 0
                if isinstance(key, Identifier):
                    found.append(
                        (kline, f"line {kline}: unquoted key {key.name} (JSON5, not HuJSON)")
                    )
                elif isinstance(key, SingleQuotedString):
                    found.append((kline, f"line {kline}: single-quoted key (JSON5, not HuJSON)"))
                elif isinstance(key, DoubleQuotedString) and not _json_string(key.raw_value):
                    found.append((kline, f"line {kline}: key is not a JSON string"))
                name = key_name(key)
                where = f"{path}.{name}" if path else name
                if name in seen:
                    found.append(
                        (
                            kline,
                            f"line {kline}: duplicate key {json.dumps(name)} in "
                            f"{path or 'the top-level object'} (first on line {seen[name]})",
                        )
                    )
                elif not path and name.lower() in folded:
                    first, first_line = folded[name.lower()]
                    found.append(
                        (
                            kline,
                            f"line {kline}: key {json.dumps(name)} is the same section as "
                            f"{json.dumps(first)} (line {first_line}): headscale and Tailscale "
                            "match top-level keys case-insensitively; keep one",
                        )
                    )
                else:
                    seen[name] = kline
                if not path:
                    folded.setdefault(name.lower(), (name, kline))
                visit(value, where)
        elif isinstance(node, JSONArray):
            for index, value in enumerate(node.values):
                visit(value, f"{path}[{index}]")
        elif isinstance(node, SingleQuotedString):
            found.append((line, f"line {line}: single-quoted string (JSON5, not HuJSON)"))
        elif isinstance(node, DoubleQuotedString):
            if not _json_string(node.raw_value):
                found.append((line, f"line {line}: string with JSON5-only escapes or line breaks"))
        elif isinstance(node, Infinity | NaN):
            found.append((line, f"line {line}: {node.const} (JSON5, not HuJSON)"))
        elif isinstance(node, UnaryOp):
            if node.op == "+" or isinstance(node.value, Infinity | NaN):
                found.append((line, f"line {line}: signed literal (JSON5, not HuJSON)"))
            else:
                visit(node.value, path)
        elif isinstance(node, Integer | Float):
            if isinstance(node, Integer) and (node.is_hex or node.is_octal):
                found.append((line, f"line {line}: hex or octal number (JSON5, not HuJSON)"))
            elif not _JSON_NUMBER.fullmatch(node.raw_value):
                found.append((line, f"line {line}: number {node.raw_value} is not JSON"))
        elif not isinstance(node, BooleanLiteral | NullLiteral):
            found.append((line, f"line {line}: unsupported value {type(node).__name__}"))

    visit(root.value, "")
    if not isinstance(root.value, JSONObject):
        found.insert(0, (0, "the document must be a JSON object"))
    return [message for _, message in sorted(found, key=lambda item: item[0])]


def _json_string(raw: str) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def plain(node: Node) -> Any:
    """A model value as plain Python (dict, list, str, int, float, bool, None)."""
    from json5.model import JSONArray, JSONObject, String, UnaryOp

    if isinstance(node, JSONObject):
        return {key_name(k): plain(v) for k, v in node.key_value_pairs}
    if isinstance(node, JSONArray):
        return [plain(v) for v in node.values]
    if isinstance(node, String):
        return node.characters
    if isinstance(node, UnaryOp):
        inner = plain(node.value)
        return -inner if node.op == "-" else inner
    return getattr(node, "value", None)


def comment_tokens(text: str) -> list[str]:
    """Every comment of a HuJSON text, in order (line endings stripped)."""
    from json5.tokenizer import tokenize

    return [
        tok.value.rstrip("\r")
        for tok in tokenize(text)
        if tok.type in ("LINE_COMMENT", "BLOCK_COMMENT")
    ]


def parse_value(text: str) -> Value:
    """The model node of a value fragment rendered by ``render``."""
    root = parse_model(text, "rendered fragment")
    value: Value = root.value
    return value


# ---------------------------------------------------------------- layout style


@dataclass(frozen=True)
class Style:
    """How a file is laid out: line ending, indent unit, trailing commas."""

    newline: str = "\n"
    unit: str = "\t"
    trailing_commas: bool = True


def detect_style(doc: Document) -> Style:
    """The layout a hand-edit of ``doc`` would follow."""
    from json5.model import JSONArray, JSONObject

    newline = "\r\n" if "\r\n" in doc.text else "\n"
    top = doc.root.value
    unit = ""
    if isinstance(top, JSONObject):
        unit = item_indent(top, doc.text) or ""
    if not unit:
        unit = _indent_from_lines(doc.text)
    with_comma = without_comma = 0
    for node in _containers(top):
        if not isinstance(node, JSONObject | JSONArray) or not node.values:
            continue
        if item_indent(node, doc.text) is None:
            continue  # inline containers say nothing about multi-line comma style
        if node.trailing_comma is not None:
            with_comma += 1
        else:
            without_comma += 1
    return Style(newline, unit, with_comma >= without_comma)


def _indent_from_lines(text: str) -> str:
    widths = []
    for line in text.splitlines():
        stripped = line.lstrip(" \t")
        lead = line[: len(line) - len(stripped)]
        if not stripped or not lead:
            continue
        if lead.startswith("\t"):
            return "\t"
        widths.append(len(lead))
    if not widths:
        return "\t"
    return " " * min(w for w in widths if w > 0)


def _containers(node: Node) -> list[Node]:
    from json5.model import JSONArray, JSONObject

    out: list[Node] = []
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, JSONObject | JSONArray):
            out.append(current)
            todo.extend(current.values)
    return out


def item_node(container: JSONObject | JSONArray, index: int) -> Node:
    """The node an item starts with: its key in an object, its value in an array."""
    from json5.model import JSONObject

    return container.keys[index] if isinstance(container, JSONObject) else container.values[index]


def item_front(container: JSONObject | JSONArray, index: int) -> list[Any]:
    """The whitespace and comments just before item ``index`` (after "{"/"[" or ",")."""
    node = item_node(container, index)
    if index == 0:
        return [*container.leading_wsc, *node.wsc_before]
    return list(node.wsc_before)


def item_indent(container: JSONObject | JSONArray, text: str) -> str | None:
    """Indentation of the container's items when they start lines of their own, else None."""
    for index in range(len(container.values)):
        front = item_front(container, index)
        if any(isinstance(part, str) and "\n" in part for part in front):
            return line_indent(text, item_node(container, index).lineno or 0)
    return None


def line_indent(text: str, lineno: int) -> str:
    """The leading whitespace of line ``lineno`` (1-based) of ``text``."""
    lines = text.split("\n")
    if not 1 <= lineno <= len(lines):
        return ""
    line = lines[lineno - 1]
    return line[: len(line) - len(line.lstrip(" \t"))]


def is_single_line(node: Node) -> bool:
    """Whether a container starts and ends on the same line."""
    text = dump_node(node)
    return "\n" not in text.strip()


def dump_node(node: Node) -> str:
    """One node's own text (without the whitespace around it)."""
    import json5
    from json5.dumper import ModelDumper

    before, after = node.wsc_before, node.wsc_after
    node.wsc_before, node.wsc_after = [], []
    try:
        text: str = json5.dumps(node, dumper=ModelDumper())  # type: ignore[arg-type]
    finally:
        node.wsc_before, node.wsc_after = before, after
    return text


# ---------------------------------------------------------------- rendering new values


def render(value: Any, style: Style, indent: str, inline_objects: bool = False) -> str:
    """HuJSON text of ``value`` laid out like hand-written policy (no JSON5-only syntax).

    Arrays of scalars and empty containers stay on one line; objects and arrays
    of objects spread over lines indented from ``indent`` by the style's unit,
    except objects inside arrays when ``inline_objects`` (one rule per line).
    """
    if isinstance(value, dict):
        if not value:
            return "{}"
        return _render_object(value, style, indent, inline_objects)
    if isinstance(value, list):
        if not value or not any(isinstance(v, dict | list) for v in value):
            one_line = "[" + ", ".join(_scalar(v) for v in value) + "]"
            if len(value) < 2 or _width(indent, style) + len(one_line) <= WRAP_AT:
                return one_line
            return _block("[", "]", [_scalar(v) for v in value], style, indent)
        inner = indent + style.unit
        items = []
        for item in value:
            if isinstance(item, dict) and inline_objects:
                items.append(render_inline(item))
            else:
                items.append(render(item, style, inner, inline_objects))
        return _block("[", "]", items, style, indent)
    return _scalar(value)


def _width(indent: str, style: Style) -> int:
    """Columns of an indent (a tab counts 4) plus room for a key in front of the value."""
    return len(indent.replace("\t", " " * 4)) + 16


def _render_object(value: dict[str, Any], style: Style, indent: str, inline_objects: bool) -> str:
    inner = indent + style.unit
    items = [f"{json_text(k)}: {render(v, style, inner, inline_objects)}" for k, v in value.items()]
    return _block("{", "}", items, style, indent)


def _block(open_: str, close: str, items: list[str], style: Style, indent: str) -> str:
    inner = indent + style.unit
    nl = style.newline
    body = ("," + nl).join(inner + item for item in items)
    comma = "," if style.trailing_commas else ""
    return f"{open_}{nl}{body}{comma}{nl}{indent}{close}"


def render_inline(value: Any) -> str:
    """One-line HuJSON of ``value`` (``{"a": 1, "b": ["x"]}``)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{json_text(k)}: {render_inline(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render_inline(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return render_inline(value)
    return json_text(value)


def json_text(value: Any) -> str:
    """JSON of a scalar; U+2028/U+2029 escaped (JSON5 readers take them for line breaks)."""
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
