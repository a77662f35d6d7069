"""The merge engine (pure): put ``acl-snippet.hujson`` into a tailnet policy, keeping every byte.

Rules (``../shared/reference/tailscale.md``):

- maps (``groups``, ``tagOwners``, ``hosts``, ``ipsets``, ``postures``,
  ``autoApprovers.routes``): add missing keys; an existing key with another
  value is a conflict to report, never to overwrite. ``tagOwners``: add the
  missing owners of an existing tag.
- arrays (``acls``, ``grants``, ``tests``, ``sshTests``, ``ssh``, ``nodeAttrs``,
  ``autoApprovers.exitNode``): append an entry only when no structurally equal
  entry exists, so a second run is a no-op.
- scalars and anything else: added when missing, otherwise left alone.
- the snippet's ``acls`` go into ``grants`` (and back) when the policy only has
  the other form; a policy with neither gets the snippet's own section.
- the snippet's ``deny`` tests go in only where they hold: a deny an existing
  broader rule defeats (allow-all, ``autogroup:member → *:*``) is left out with
  a warning, and so is every rule letting any device reach the snippet's
  destinations (``broad.py``).

New entries are inserted in the model with the layout of their neighbours
(indent unit, line ending, trailing commas, one-line or spread rules) and a
``// added by tailwart`` comment; the output is checked to be the input with
text inserted and nothing else changed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .broad import broad_reach, describe_reach, holding_denies
from .errors import PolicyInputError
from .evaluate import split_address
from .hujson import (
    Document,
    Style,
    detect_style,
    dump,
    is_single_line,
    item_front,
    item_indent,
    json_text,
    key_name,
    line_indent,
    parse,
    parse_value,
    plain,
    render,
    render_inline,
)

if TYPE_CHECKING:
    from json5.model import JSONArray, JSONObject, Node, Value

MAP_SECTIONS = frozenset({"groups", "tagOwners", "hosts", "ipsets", "postures"})
ARRAY_SECTIONS = frozenset({"acls", "grants", "tests", "sshTests", "ssh", "nodeAttrs"})
#: owners lists whose missing members are added instead of reported as a conflict
OWNER_MAPS = frozenset({"tagOwners"})

LINE_MARK = "// added by tailwart"
INLINE_MARK = "/* tailwart */"


@dataclass(frozen=True)
class Conflict:
    """A key both sides define with different values: the policy's value is kept."""

    path: str
    line: int
    policy: Any
    snippet: Any

    def __str__(self) -> str:
        return (
            f"{self.path} (line {self.line}): the policy has {_short(self.policy)}, "
            f"the snippet wants {_short(self.snippet)}; kept the policy's value"
        )


@dataclass
class MergeResult:
    """What a merge produced: the new text and what was added, kept or converted."""

    before: str
    after: str
    additions: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: what the operator must not miss: broad rules reaching the snippet's destinations,
    #: snippet deny tests left out because an existing rule defeats them
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def diff(self, name: str = "policy.hujson") -> str:
        """A unified diff of the change (empty when nothing changed)."""
        return unified_diff(self.before, self.after, name)


def unified_diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        before.replace("\r\n", "\n").splitlines(keepends=True),
        after.replace("\r\n", "\n").splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def merge(
    policy_text: str,
    snippet_text: str,
    policy_name: str = "policy",
    snippet_name: str = "acl-snippet.hujson",
) -> MergeResult:
    """Merge the snippet into the policy; raise PolicyInputError on bad input (nothing merged)."""
    policy = parse(policy_text, policy_name)
    snippet = parse(snippet_text, snippet_name)
    merger = _Merger(policy)
    wanted, dropped = holding_denies(snippet.value, policy.value)
    warnings = merger.result.warnings
    for reach in broad_reach(snippet.value, policy.value):
        warnings.append(describe_reach(reach, merger.where(reach.rule)))
    by_rule: dict[str, list[str]] = {}
    for left in dropped:
        by_rule.setdefault(left.rule, []).append(f"{left.src} -> {left.address}")
    for rule, denied in by_rule.items():
        warnings.append(
            f"left out the snippet's deny test(s) {', '.join(denied)}: "
            f"{merger.where(rule)} already allows them"
        )
    for key, value in route_sections(wanted, policy.value, merger.result.notes):
        merger.merge_section(key, value)
    after = dump(policy.root)
    if not is_insertion_of(policy_text, after):  # pragma: no cover - an engine bug, never input
        raise AssertionError("merge changed text outside the inserted entries")
    merger.result.after = after
    parse(after, f"{policy_name} (merged)")
    return merger.result


def is_insertion_of(before: str, after: str) -> bool:
    """True when ``after`` is ``before`` with text inserted (a supersequence), nothing removed."""
    pos = 0
    for char in before:
        pos = after.find(char, pos)
        if pos < 0:
            return False
        pos += 1
    return True


# ---------------------------------------------------------------- acls <-> grants


def route_sections(
    snippet: dict[str, Any], policy: dict[str, Any], notes: list[str]
) -> list[tuple[str, Any]]:
    """The snippet's sections in order, with rules moved to the form the policy uses."""
    out: dict[str, Any] = {}
    present = {name.lower() for name in policy}  # top-level keys match case-insensitively
    has_acls, has_grants = "acls" in present, "grants" in present
    for key, value in snippet.items():
        target, converted = key, value
        if key == "acls" and has_grants and not has_acls and isinstance(value, list):
            grants = [acl_to_grants(rule) for rule in value]
            if all(g is not None for g in grants):
                target, converted = "grants", [g for group in grants if group for g in group]
                notes.append("the policy uses grants: the snippet's acls were added as grants")
        elif key == "grants" and has_acls and not has_grants and isinstance(value, list):
            acls = [grant_to_acl(rule) for rule in value]
            if all(a is not None for a in acls):
                target, converted = "acls", acls
                notes.append("the policy uses acls: the snippet's grants were added as acls")
        if target in out and isinstance(out[target], list) and isinstance(converted, list):
            out[target] = out[target] + [c for c in converted if c not in out[target]]
        else:
            out[target] = converted
    return list(out.items())


def acl_to_grants(rule: Any) -> list[dict[str, Any]] | None:
    """The grants equal to one ACL rule (one per distinct port list), or None if not expressible."""
    if not isinstance(rule, dict) or rule.get("action") != "accept":
        return None
    if set(rule) - {"action", "src", "dst", "proto", "srcPosture"}:
        return None
    proto = rule.get("proto")
    by_ports: dict[tuple[str, ...], list[str]] = {}
    for dst in rule.get("dst", []):
        if not isinstance(dst, str):
            return None
        selector, ports = split_address(dst)
        if not ports:
            return None
        if ports == "*" and not proto:
            ip: tuple[str, ...] = ("*",)
        else:
            ip = tuple(f"{proto}:{p}" if proto else p for p in ports.split(","))
        by_ports.setdefault(ip, []).append(selector)
    grants = []
    for ip, selectors in by_ports.items():
        grant: dict[str, Any] = {"src": rule.get("src", []), "dst": selectors, "ip": list(ip)}
        if "srcPosture" in rule:
            grant["srcPosture"] = rule["srcPosture"]
        grants.append(grant)
    return grants


def grant_to_acl(grant: Any) -> dict[str, Any] | None:
    """The ACL rule equal to a network-only grant, or None (app grants, mixed protocols, via)."""
    if not isinstance(grant, dict) or set(grant) - {"src", "dst", "ip", "srcPosture"}:
        return None
    ips = grant.get("ip")
    if not isinstance(ips, list) or not ips or not all(isinstance(i, str) for i in ips):
        return None
    protos, ports = set(), []
    for spec in ips:
        proto, _, port = spec.rpartition(":")
        if spec == "*":
            proto, port = "", "*"
        protos.add(proto)
        ports.append(port)
    if len(protos) != 1:
        return None
    proto = protos.pop()
    acl: dict[str, Any] = {
        "action": "accept",
        "src": grant.get("src", []),
        "dst": [f"{d}:{','.join(ports)}" for d in grant.get("dst", [])],
    }
    if proto:
        acl["proto"] = proto
    if "srcPosture" in grant:
        acl["srcPosture"] = grant["srcPosture"]
    return acl


# ---------------------------------------------------------------- the model edits


class _Merger:
    def __init__(self, doc: Document) -> None:
        from json5.model import JSONObject

        if not isinstance(doc.root.value, JSONObject):
            raise PolicyInputError(f"{doc.name}: the policy must be a JSON object")
        self.doc = doc
        self.top: JSONObject = doc.root.value
        self.style: Style = detect_style(doc)
        self.result = MergeResult(doc.text, doc.text)
        #: ids of the value nodes this merge inserted
        self._inserted: set[int] = set()
        #: the layout of each container this merge inserted into, by id
        self._layouts: dict[int, _Layout] = {}

    def where(self, path: str) -> str:
        """``acls[0]`` → ``acls[0] (line 19: {"action": …})``, for messages."""
        from json5.model import JSONArray

        section, _, rest = path.partition("[")
        node = _lookup(self.top, section, fold=True)
        index = int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else -1
        if not isinstance(node, JSONArray) or not 0 <= index < len(node.values):
            return path
        item = node.values[index]
        return f"{path} (line {item.lineno}: {_short(plain(item), 80)})"

    # ---- merge rules

    def merge_section(self, key: str, value: Any) -> None:
        node = _lookup(self.top, key, fold=True)
        if node is None:
            self.add_pair(self.top, key, value, key)
        elif key in MAP_SECTIONS:
            self.merge_map(node, value, key, owners=key in OWNER_MAPS)
        elif key in ARRAY_SECTIONS:
            self.merge_array(node, value, key)
        elif key == "autoApprovers":
            self.merge_auto_approvers(node, value)
        else:
            self.keep(node, value, key)

    def merge_map(self, node: Node, value: Any, path: str, owners: bool = False) -> None:
        from json5.model import JSONArray, JSONObject

        obj = self._expect(node, JSONObject, path, "an object")
        if not isinstance(value, dict):
            raise PolicyInputError(f"snippet: {path} must be an object")
        for key, wanted in value.items():
            existing = _lookup(obj, key)
            where = f"{path}.{key}"
            if existing is None:
                self.add_pair(obj, key, wanted, where)
            elif owners and isinstance(existing, JSONArray) and isinstance(wanted, list):
                self.merge_array(existing, wanted, where, what="owner")
            else:
                self.keep(existing, wanted, where)

    def merge_array(self, node: Node, value: Any, path: str, what: str = "entry") -> None:
        from json5.model import JSONArray

        arr = self._expect(node, JSONArray, path, "an array")
        if not isinstance(value, list):
            raise PolicyInputError(f"snippet: {path} must be an array")
        present = [plain(v) for v in arr.values]
        for item in value:
            if item in present:
                continue
            self.append_item(arr, item, path, what)
            present.append(item)

    def merge_auto_approvers(self, node: Node, value: Any) -> None:
        from json5.model import JSONObject

        obj = self._expect(node, JSONObject, "autoApprovers", "an object")
        if not isinstance(value, dict):
            raise PolicyInputError("snippet: autoApprovers must be an object")
        for key, wanted in value.items():
            existing = _lookup(obj, key)
            where = f"autoApprovers.{key}"
            if existing is None:
                self.add_pair(obj, key, wanted, where)
            elif key == "routes":
                self.merge_map(existing, wanted, where)
            elif key == "exitNode":
                self.merge_array(existing, wanted, where, what="approver")
            else:
                self.keep(existing, wanted, where)

    def keep(self, node: Node, wanted: Any, path: str) -> None:
        current = plain(node)
        if current != wanted:
            self.result.conflicts.append(Conflict(path, node.lineno or 0, current, wanted))

    def _expect(self, node: Node, kind: type[Any], path: str, what: str) -> Any:
        if not isinstance(node, kind):
            raise PolicyInputError(
                f"{self.doc.name}: line {node.lineno}: {path} must be {what} to merge the snippet"
            )
        return node

    # ---- insertion

    def add_pair(self, obj: JSONObject, key: str, value: Any, path: str) -> None:
        layout = self._layout(obj, value)
        key_node = parse_value(json_text(key))
        value_node = parse_value(self._render(obj, value, layout))
        value_node.wsc_before = [" "]
        obj.keys.append(key_node)  # type: ignore[arg-type]
        obj.values.append(value_node)
        self._place(obj, key_node, value_node, layout)
        self.result.additions.append(f"{path}: {_short(value)}")

    def append_item(self, arr: JSONArray, value: Any, path: str, what: str) -> None:
        layout = self._layout(arr, value)
        node = parse_value(self._render(arr, value, layout))
        arr.values.append(node)
        self._place(arr, node, node, layout)
        self.result.additions.append(f"{path}: {what} {_short(value)}")

    def _layout(self, container: JSONObject | JSONArray, value: Any) -> _Layout:
        """How items go into ``container``: decided once, before this merge's first insertion."""
        from json5.model import JSONObject

        known = self._layouts.get(id(container))
        if known is not None:
            return known
        if not container.values:
            spread = (
                isinstance(container, JSONObject)
                or isinstance(value, dict | list)
                or id(container) == id(self.top)
            )
            own = line_indent(self.doc.text, container.lineno or 0)
            layout = _Layout(spread, own + self.style.unit if spread else "", own)
        else:
            indent = item_indent(container, self.doc.text)
            layout = _Layout(indent is not None, indent or "", "")
        self._layouts[id(container)] = layout
        return layout

    def _render(self, container: JSONObject | JSONArray, value: Any, layout: _Layout) -> str:
        from json5.model import JSONArray, JSONObject

        if not layout.spread:
            return render_inline(value)
        if isinstance(value, dict) and isinstance(container, JSONArray):
            sibling = next((v for v in container.values if isinstance(v, JSONObject)), None)
            if sibling is not None and is_single_line(sibling):
                return render_inline(value)
        return render(value, self.style, layout.indent)

    def _place(
        self, container: JSONObject | JSONArray, front_node: Node, back_node: Node, layout: _Layout
    ) -> None:
        """Set the whitespace around a just-appended item so that the old text is untouched."""
        from json5.model import BlockComment, LineComment, TrailingComma

        nl = self.style.newline
        count = len(container.values)
        self._inserted.add(id(back_node))
        continuing = count > 1 and id(container.values[-2]) in self._inserted
        if not layout.spread:
            mark: list[Any] = [] if continuing else [BlockComment(INLINE_MARK), " "]
            if count == 1:
                front_node.wsc_before = mark
                return
            front_node.wsc_before = [_separator(container), *mark]
            comma = container.trailing_comma
            if comma is None:
                last = container.values[-2]
                back_node.wsc_after = list(last.wsc_after)
                last.wsc_after = []
            return
        if count == 1:  # the container was empty
            gap = list(container.leading_wsc)
            head, tail = _split_newline(gap, last=True)
            if head:
                container.leading_wsc = head
                front_node.wsc_before = [layout.indent, LineComment(LINE_MARK), nl, layout.indent]
                back = [nl, *tail]
            else:
                front_node.wsc_before = [
                    nl,
                    layout.indent,
                    LineComment(LINE_MARK),
                    nl,
                    layout.indent,
                ]
                back = [nl, layout.close_indent]
            if self.style.trailing_commas:
                new_comma = TrailingComma()
                new_comma.wsc_after = back
                container.trailing_comma = new_comma
            else:
                back_node.wsc_after = back
            return

        last = container.values[-2]
        comma = container.trailing_comma
        gap = list(comma.wsc_after) if comma is not None else list(last.wsc_after)
        head, tail = _split_newline(gap, last=False)
        if continuing:  # one comment marks a run of inserted items
            mark_lines: list[Any] = [layout.indent]
        else:
            blank = [nl] if _blank_line_before(container, count - 2) else []
            mark_lines = [*blank, layout.indent, LineComment(LINE_MARK), nl, layout.indent]
        if head:
            front = [*head, *mark_lines]
            back = [nl, *tail]
        else:
            front = [nl, *mark_lines]
            back = tail
        front_node.wsc_before = front
        if comma is not None:
            back_node.wsc_after = []
            comma.wsc_after = back
        else:
            last.wsc_after = []
            back_node.wsc_after = back


@dataclass(frozen=True)
class _Layout:
    #: one item per line (True) or inline
    spread: bool
    #: indentation of the items (spread only)
    indent: str
    #: indentation of the closing bracket of a container that was empty
    close_indent: str


def _lookup(obj: JSONObject, key: str, fold: bool = False) -> Value | None:
    """The value of ``key``; with ``fold``, matched case-insensitively (top-level sections:
    headscale and Tailscale read ``"ACLs"`` as ``acls``)."""
    for k, v in obj.key_value_pairs:
        name = key_name(k)
        if name == key or (fold and name.lower() == key.lower()):
            return v
    return None


def _split_newline(parts: list[Any], last: bool) -> tuple[list[Any], list[Any]]:
    """Split whitespace/comment parts after the first (or last) newline; ([], parts) if none."""
    indexes = [i for i, p in enumerate(parts) if isinstance(p, str) and "\n" in p]
    if not indexes:
        return [], parts
    i = indexes[-1] if last else indexes[0]
    text: str = parts[i]
    cut = (text.rindex("\n") if last else text.index("\n")) + 1
    head = [*parts[:i], text[:cut]]
    tail = [p for p in [text[cut:], *parts[i + 1 :]] if p != ""]
    return head, tail


def _blank_line_before(container: JSONObject | JSONArray, index: int) -> bool:
    """Whether item ``index`` is set off by a blank line (then new items are too)."""
    if index <= 0:
        return False
    text = ""
    for part in item_front(container, index):
        if not isinstance(part, str):
            break
        text += part
    return text.count("\n") >= 2


def _separator(container: JSONObject | JSONArray) -> str:
    """The whitespace between items of an inline container (" " unless the file says otherwise)."""
    if len(container.values) > 2:
        front = item_front(container, 1)
        if front and all(isinstance(p, str) for p in front):
            return "".join(front)
    return " "


def _short(value: Any, width: int = 100) -> str:
    text = render_inline(value)
    return text if len(text) <= width else text[: width - 1] + "…"
