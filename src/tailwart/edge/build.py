"""Building the edge binary: caddy + caddy-l4 with xcaddy, pinned, content-addressed.

``ensure_caddy`` is the one entry point. It reads the pins from ``caddy/pins.toml``,
checks Go, and then, cheapest first:

1. the binary in ``caddy/bin/`` already matches the stamp (pins, OS, arch, Go
   version) and its recorded sha256: nothing to do;
2. a verified build for this stamp sits in the cache
   (``$TAILWART_CACHE/caddy/<stamp>/``): copy it into ``caddy/bin/``;
3. otherwise install xcaddy (``go install`` into ``$TAILWART_CACHE/tools``), build
   to a temp file, verify, rename into the cache and into ``caddy/bin/``.

When ``caddy/pins.toml`` names a patch (``[caddy_l4_patch]``), step 3 first
fetches the pinned caddy-l4 module with ``go mod download`` (Go checks it against
the checksum database), checks its ``h1:`` hash against the pin, applies the
patch from ``caddy/patches/`` in ``$TAILWART_CACHE/src/``, checks the patched
tree's hash, and builds with ``--with module@version=<patched tree>``; the
patch's sha256 is part of the stamp and of the binary's name.

A failed build leaves the previous binary untouched. Native builds are verified by
running them (``list-modules``, ``build-info``); cross builds by their ELF header
and the module list Go embeds (``go version -m``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import tomllib
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import OperationError, UsageError
from ..paths import cache_dir, repo_root

CADDY_MODULE = "github.com/caddyserver/caddy/v2"
CADDY_L4_MODULE = "github.com/mholt/caddy-l4"
XCADDY_PACKAGE = "github.com/caddyserver/xcaddy/cmd/xcaddy"
#: modules a usable edge binary must contain
REQUIRED_MODULES = ("layer4", "layer4.handlers.proxy")
#: where Go is looked for when it is not on PATH
GO_FALLBACKS: tuple[str, ...] = ("/usr/local/go/bin/go",)
#: supported target OS/arch (what the edge hosts run)
TARGET_OS = ("linux",)
TARGET_ARCH = ("amd64", "arm64")
#: ELF e_machine per GOARCH, to check a cross build without running it
_ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
#: seconds between progress lines while a step runs
PROGRESS_EVERY = 10.0

Progress = Callable[[str], None]


class EdgeBuildError(OperationError):
    """Building or verifying the edge binary failed (exit 1); the message says what to do."""


class PinsError(UsageError):
    """caddy/pins.toml is missing or malformed (exit 2)."""


@dataclass(frozen=True)
class Pins:
    """The versions the edge binary is built from (``caddy/pins.toml``)."""

    caddy: str
    caddy_l4: str
    xcaddy: str
    min_go: str


@dataclass(frozen=True)
class Built:
    """A verified edge binary."""

    path: Path
    sha256: str
    goos: str
    goarch: str
    pins: Pins
    #: caddy's version as the binary reports it (native) or as pinned (cross build)
    version: str
    #: sha256 of the build stamp (pins, OS, arch, Go version)
    stamp: str = ""
    #: what ensure_caddy did: "unchanged", "copied from cache" or "built"
    action: str = ""
    #: seconds ensure_caddy took
    seconds: float = 0.0
    #: the caddy-l4 patch built in (None: the stock module)
    patch: ModulePatch | None = None


@dataclass(frozen=True)
class ModulePatch:
    """A patch to the pinned caddy-l4 source (``[caddy_l4_patch]`` in ``caddy/pins.toml``)."""

    #: the patch file (under ``caddy/``)
    path: Path
    #: sha256 of the patch file, as pinned
    sha256: str
    #: ``h1:`` hash of the pinned module as published (its go.sum line)
    module_sum: str
    #: ``h1:`` hash of the module tree once the patch is applied
    patched_sum: str


PATCH_TABLE = "caddy_l4_patch"
_PATCH_KEYS = ("file", "sha256", "module_sum", "patched_sum")
_H1_RE = re.compile(r"^h1:[A-Za-z0-9+/]{43}=$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+([-+][0-9A-Za-z.\-+]*)?$")
_MIN_GO_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")


def _read_pins_file(root: Path | None) -> tuple[Path, dict[str, object]]:
    path = (root or repo_root()) / "caddy" / "pins.toml"
    try:
        return path, tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PinsError(f"{path}: missing; it holds the caddy/caddy-l4/xcaddy pins") from None
    except tomllib.TOMLDecodeError as exc:
        raise PinsError(f"{path}: not valid TOML: {exc}") from None


def load_pins(root: Path | None = None) -> Pins:
    """Read and validate ``caddy/pins.toml`` under ``root`` (default: this checkout)."""
    path, data = _read_pins_file(root)
    problems = []
    values: dict[str, str] = {}
    for key in ("caddy", "caddy_l4", "xcaddy", "min_go"):
        value = data.get(key)
        pattern = _MIN_GO_RE if key == "min_go" else _VERSION_RE
        if not isinstance(value, str) or not pattern.match(value):
            want = "a Go version like 1.25.1" if key == "min_go" else "an exact version like v1.2.3"
            problems.append(f"  {key} = {value!r}: expected {want}")
        else:
            values[key] = value
    unknown = sorted(set(data) - {"caddy", "caddy_l4", "xcaddy", "min_go", PATCH_TABLE})
    problems += [f"  {key}: unknown key" for key in unknown]
    if problems:
        raise PinsError(f"{path}: invalid pins:\n" + "\n".join(problems))
    return Pins(**values)


def load_patch(root: Path | None = None) -> ModulePatch | None:
    """The ``[caddy_l4_patch]`` table of ``caddy/pins.toml``, checked; None when absent.

    The patch file must exist under ``caddy/`` and match its pinned sha256."""
    path, data = _read_pins_file(root)
    table = data.get(PATCH_TABLE)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise PinsError(f"{path}: [{PATCH_TABLE}] must be a table")
    problems = [f"  {PATCH_TABLE}.{key}: missing" for key in _PATCH_KEYS if key not in table]
    problems += [
        f"  {PATCH_TABLE}.{key}: unknown key" for key in sorted(set(table) - set(_PATCH_KEYS))
    ]
    checks = [("sha256", _SHA256_RE, "a sha256 in hex")]
    checks += [(k, _H1_RE, "a Go h1: hash") for k in ("module_sum", "patched_sum")]
    for key, pattern, want in checks:
        value = table.get(key)
        if key in table and (not isinstance(value, str) or not pattern.match(value)):
            problems.append(f"  {PATCH_TABLE}.{key} = {value!r}: expected {want}")
    patch_file: Path | None = None
    name = table.get("file")
    if "file" in table:
        caddy_dir = path.parent
        patch_file = (caddy_dir / str(name)).resolve()
        if not isinstance(name, str) or caddy_dir.resolve() not in patch_file.parents:
            problems.append(f"  {PATCH_TABLE}.file = {name!r}: expected a path under caddy/")
        elif not patch_file.is_file():
            problems.append(f"  {PATCH_TABLE}.file = {name!r}: no such file")
        elif not problems and file_sha256(patch_file) != table["sha256"]:
            problems.append(
                f"  {PATCH_TABLE}.file = {name!r}: its sha256 is {file_sha256(patch_file)}, "
                f"pinned {table['sha256']}"
            )
    if problems or patch_file is None:
        raise PinsError(f"{path}: invalid pins:\n" + "\n".join(problems))
    return ModulePatch(
        path=patch_file,
        sha256=str(table["sha256"]),
        module_sum=str(table["module_sum"]),
        patched_sum=str(table["patched_sum"]),
    )


# ---------------------------------------------------------------- Go


def find_go() -> Path:
    """The ``go`` command: $TAILWART_GO, else PATH, else /usr/local/go/bin/go."""
    explicit = os.environ.get("TAILWART_GO")
    if explicit:
        if os.access(explicit, os.X_OK):
            return Path(explicit)
        raise EdgeBuildError(
            f"Go not found: TAILWART_GO={explicit} is not an executable.\n"
            "Next: point TAILWART_GO at a Go >= toolchain's bin/go, or unset it."
        )
    found = shutil.which("go")
    if found:
        return Path(found)
    for candidate in GO_FALLBACKS:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise EdgeBuildError(
        "Go not found: building caddy-l4 needs the Go toolchain (`go` on PATH).\n"
        "Next: install Go (https://go.dev/dl) and put its bin/ on PATH, "
        "or set TAILWART_GO=/path/to/go."
    )


def _go_env(extra: dict[str, str] | None = None, *, target: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"  # never fetch another toolchain behind the operator's back
    if not target:
        env.pop("GOOS", None)
        env.pop("GOARCH", None)
    env.update(extra or {})
    return env


def parse_go_version(text: str) -> tuple[int, int, int] | None:
    """``go version`` output → (major, minor, patch); None when it holds no version."""
    match = re.search(r"\bgo(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def go_version(go: Path) -> str:
    """The toolchain's version string (e.g. ``go1.26.8``)."""
    try:
        out = subprocess.run(
            [str(go), "version"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_go_env(target=False),
            check=False,
        )
    except OSError as exc:
        raise EdgeBuildError(f"Go at {go} cannot run: {exc}\nNext: reinstall Go.") from None
    parsed = parse_go_version(out.stdout)
    if out.returncode != 0 or parsed is None:
        detail = (out.stderr or out.stdout).strip()[:300]
        raise EdgeBuildError(
            f"`{go} version` failed ({detail or 'no output'}).\nNext: check the Go installation."
        )
    return "go{}.{}.{}".format(*parsed)


def check_go(go: Path, pins: Pins) -> str:
    """The Go version, or EdgeBuildError when it is older than ``pins.min_go``."""
    version = go_version(go)
    have = parse_go_version(version)
    want = tuple(int(p) for p in (pins.min_go + ".0").split(".")[:3])
    if have is None or have < want:
        raise EdgeBuildError(
            f"Go too old: {go} is {version}, caddy-l4 {pins.caddy_l4} needs Go >= {pins.min_go}.\n"
            f"Next: install Go >= {pins.min_go} (https://go.dev/dl) and put it first on PATH, "
            "or set TAILWART_GO=/path/to/go."
        )
    return version


# ---------------------------------------------------------------- stamp and names


def binary_name(pins: Pins, goos: str, goarch: str, patch: ModulePatch | None = None) -> str:
    """``caddy-v2.11.9-l4-v0.1.2-linux-amd64``: version, OS and arch in the name; a patched
    caddy-l4 adds the patch's sha256 prefix (``…-l4-v0.1.2-p1a2b3c4d-linux-amd64``)."""
    tag = f"-p{patch.sha256[:8]}" if patch else ""
    return f"caddy-{pins.caddy}-l4-{pins.caddy_l4}{tag}-{goos}-{goarch}"


def build_stamp(
    pins: Pins, goos: str, goarch: str, go: str, patch: ModulePatch | None = None
) -> dict[str, str]:
    """Everything that determines the binary's bytes."""
    stamp = {
        "caddy": pins.caddy,
        "caddy_l4": pins.caddy_l4,
        "xcaddy": pins.xcaddy,
        "goos": goos,
        "goarch": goarch,
        "go": go,
        "cgo": "0",
    }
    if patch is not None:
        stamp["caddy_l4_patch"] = patch.sha256
        stamp["caddy_l4_patched_sum"] = patch.patched_sum
    return stamp


def stamp_hash(stamp: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dirhash_h1(files: Iterable[tuple[str, bytes]]) -> str:
    """Go's ``h1:`` module hash (golang.org/x/mod/sumdb/dirhash Hash1) of (name, content)
    pairs: sha256 over the lines ``<sha256 hex>  <name>`` sorted by name, base64."""
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files)]
    digest = hashlib.sha256("".join(lines).encode()).digest()
    return "h1:" + base64.b64encode(digest).decode()


def tree_files(root: Path, prefix: str) -> Iterator[tuple[str, bytes]]:
    """(``prefix/relative path``, content) of every file under ``root``, for dirhash_h1."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes()


def _redact_url(url: str) -> str:
    """GOPROXY entries may carry credentials: keep scheme, host and path only."""
    parts = []
    for item in re.split(r"([,|])", url):
        if item in {",", "|"} or "://" not in item:
            parts.append(item)
            continue
        split = urlsplit(item)
        host = split.hostname or ""
        if split.port:
            host = f"{host}:{split.port}"
        parts.append(urlunsplit((split.scheme, host, split.path, "", "")))
    return "".join(parts)


# ---------------------------------------------------------------- running go / xcaddy


@dataclass
class _Step:
    name: str
    started: float


class _Runner:
    """Runs a command, keeps the tail of its output, reports progress while it runs."""

    def __init__(self, progress: Progress | None, verbose: bool, started: float) -> None:
        self.progress = progress
        self.verbose = verbose
        self.started = started

    def say(self, text: str) -> None:
        if self.progress is not None:
            elapsed = int(time.monotonic() - self.started)
            self.progress(f"[{elapsed // 60:d}:{elapsed % 60:02d}] {text}")

    def run(
        self,
        cmd: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        step: str,
        markers: tuple[tuple[str, str], ...] = (),
    ) -> tuple[int, list[str]]:
        """Run ``cmd``; return its exit code and its last output lines."""
        current = _Step(step, time.monotonic())
        self.say(step)
        tail: deque[str] = deque(maxlen=400)
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                env=env,
                cwd=cwd,
            )
        except OSError as exc:
            return 127, [f"{cmd[0]}: {exc}"]
        assert proc.stdout is not None
        stream = proc.stdout
        lock = threading.Lock()

        def read() -> None:
            for raw in stream:
                line = raw.rstrip("\n")
                with lock:
                    tail.append(line)
                    for marker, name in markers:
                        if marker in line and current.name != name:
                            current.name = name
                            current.started = time.monotonic()
                            self.say(name)
                if self.verbose and self.progress is not None:
                    self.progress(f"    {line}")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        last = time.monotonic()
        try:
            while proc.poll() is None:
                reader.join(timeout=0.5)
                now = time.monotonic()
                if not self.verbose and now - last >= PROGRESS_EVERY:
                    last = now
                    with lock:
                        name, since = current.name, current.started
                    self.say(f"{name} … ({int(now - since)}s in this step)")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        reader.join(timeout=5)
        return proc.returncode, list(tail)


_UNREACHABLE = (
    "dial tcp",
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "tls handshake timeout",
    "proxyconnect",
    "connection reset",
    "server misbehaving",
)
_REFUSED = (
    "invalid version",
    "unknown revision",
    "404 not found",
    "410 gone",
    "no matching versions",
    "invalid semantic version",
    "malformed module path",
    "not found: ",
)


def classify_failure(what: str, lines: list[str], pins: Pins) -> EdgeBuildError:
    """Turn go/xcaddy output into an error that says what to do next."""
    text = "\n".join(lines)
    low = text.lower()
    proxy = _redact_url(os.environ.get("GOPROXY") or "Go's default GOPROXY (go env GOPROXY)")
    noise = ("creating new go.mod", "to add module requirements", "go mod tidy")
    patterns = ("requires go >=", *_UNREACHABLE, *_REFUSED)
    relevant = [
        ln
        for ln in lines
        if ln.strip() and not any(n in ln for n in noise) and any(p in ln.lower() for p in patterns)
    ]
    excerpt = "\n".join("    " + ln for ln in (relevant or lines)[-6:])
    if "requires go >=" in low or "go.mod requires go" in low:
        return EdgeBuildError(
            f"{what} failed: Go too old for a pinned module.\n{excerpt}\n"
            f"Next: install Go >= {pins.min_go} (or what the message names) and retry."
        )
    if any(p in low for p in _UNREACHABLE):
        return EdgeBuildError(
            f"{what} failed: the Go module proxy is unreachable (GOPROXY={proxy}).\n{excerpt}\n"
            "Next: check the network or the proxy, or set GOPROXY to one you can reach, "
            "then rerun `inv build-caddy`."
        )
    if any(p in low for p in _REFUSED):
        return EdgeBuildError(
            f"{what} failed: a pinned version was refused by the module proxy "
            f"(GOPROXY={proxy}).\n{excerpt}\n"
            f"Next: check caddy/pins.toml (caddy {pins.caddy}, caddy-l4 {pins.caddy_l4}, "
            f"xcaddy {pins.xcaddy}) against the versions the proxy serves; "
            "caddy-l4 must be an exact version, never `latest`."
        )
    return EdgeBuildError(
        f"{what} failed.\n{excerpt}\nNext: rerun `inv build-caddy --verbose` to see the Go output."
    )


def ensure_xcaddy(go: Path, pins: Pins, runner: _Runner) -> Path:
    """xcaddy at the pinned version in ``$TAILWART_CACHE/tools/xcaddy-<version>/``."""
    tool_dir = cache_dir("tools", f"xcaddy-{pins.xcaddy}")
    xcaddy = tool_dir / "xcaddy"
    if os.access(xcaddy, os.X_OK):
        return xcaddy
    code, lines = runner.run(
        [str(go), "install", f"{XCADDY_PACKAGE}@{pins.xcaddy}"],
        env=_go_env({"GOBIN": str(tool_dir), "CGO_ENABLED": "0"}, target=False),
        cwd=tool_dir,
        step=f"installing xcaddy {pins.xcaddy} (go install)",
    )
    if code != 0 or not os.access(xcaddy, os.X_OK):
        raise classify_failure(f"go install xcaddy@{pins.xcaddy}", lines, pins)
    return xcaddy


# ---------------------------------------------------------------- the patched module


def patched_source_dir(pins: Pins, patch: ModulePatch) -> Path:
    """Where the patched caddy-l4 tree lives: ``$TAILWART_CACHE/src/caddy-l4-<v>-p<sha>``."""
    return cache_dir("src") / f"caddy-l4-{pins.caddy_l4}-p{patch.sha256[:16]}"


def prepare_patched_module(go: Path, pins: Pins, patch: ModulePatch, runner: _Runner) -> Path:
    """The pinned caddy-l4, checksum-verified, with ``patch`` applied: a directory to
    build from. Reused when a verified tree is already in the cache."""
    dest = patched_source_dir(pins, patch)
    prefix = f"{CADDY_L4_MODULE}@{pins.caddy_l4}"
    if dest.is_dir() and dirhash_h1(tree_files(dest, prefix)) == patch.patched_sum:
        return dest
    code, lines = runner.run(
        [str(go), "mod", "download", "-json", prefix],
        env=_go_env({"GOFLAGS": "-mod=mod"}, target=False),
        cwd=dest.parent,
        step=f"fetching caddy-l4 {pins.caddy_l4} (go mod download)",
    )
    try:
        info = json.loads("\n".join(lines))
    except ValueError:
        info = {}
    if code != 0 or not isinstance(info, dict) or info.get("Error") or not info.get("Zip"):
        detail = [str(info["Error"])] if isinstance(info, dict) and info.get("Error") else lines
        raise classify_failure(f"go mod download {prefix}", detail, pins)
    zip_path = Path(str(info["Zip"]))
    with zipfile.ZipFile(zip_path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        files = [(m.filename, archive.read(m)) for m in members]
    got = dirhash_h1(files)
    if got != patch.module_sum or info.get("Sum") != patch.module_sum:
        raise EdgeBuildError(
            f"caddy-l4 {pins.caddy_l4} from the module proxy does not match its pin: "
            f"hash {got} (go reports {info.get('Sum')}), pinned {patch.module_sum}.\n"
            "Next: do not build from it; check GOPROXY and the pin in caddy/pins.toml."
        )
    runner.say(f"applying {patch.path.name} to caddy-l4 {pins.caddy_l4} ({got})")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, data in files:
            if not name.startswith(prefix + "/") or ".." in name.split("/"):
                raise EdgeBuildError(f"caddy-l4 module zip holds an unexpected path: {name}")
            target = tmp / name[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        code, lines = runner.run(
            ["patch", "-p1", "--batch", "--forward", "--quiet", "-i", str(patch.path)],
            env=dict(os.environ),
            cwd=tmp,
            step=f"patching caddy-l4 with {patch.path.name}",
        )
        if code != 0:
            excerpt = "\n".join("    " + ln for ln in lines[-6:])
            raise EdgeBuildError(
                f"{patch.path.name} does not apply to caddy-l4 {pins.caddy_l4}:\n{excerpt}\n"
                "Next: refresh the patch for the pinned version (and its pins), or drop "
                f"[{PATCH_TABLE}] from caddy/pins.toml."
            )
        for leftover in [*tmp.rglob("*.orig"), *tmp.rglob("*.rej")]:
            leftover.unlink()
        patched = dirhash_h1(tree_files(tmp, prefix))
        if patched != patch.patched_sum:
            raise EdgeBuildError(
                f"caddy-l4 {pins.caddy_l4} with {patch.path.name} hashes to {patched}, "
                f"pinned {patch.patched_sum}.\n"
                "Next: if the patch changed on purpose, put the new hash in caddy/pins.toml."
            )
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ---------------------------------------------------------------- verification


def _run_binary(path: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise EdgeBuildError(f"{path.name} {' '.join(args)} could not run: {exc}") from None
    if out.returncode != 0:
        raise EdgeBuildError(
            f"{path.name} {' '.join(args)} failed: {out.stderr.strip()[:400]}\n"
            "Next: rebuild with `inv build-caddy --force`."
        )
    return out.stdout


def verify_native(path: Path, pins: Pins) -> tuple[str, str]:
    """Run the binary: modules present at the pinned versions. Returns (version, build-info)."""
    version_line = _run_binary(path, "version").strip()
    version = version_line.split()[0] if version_line else ""
    if version != pins.caddy:
        raise EdgeBuildError(f"{path.name} reports caddy {version!r}, pinned {pins.caddy}.")
    try:
        modules = json.loads(_run_binary(path, "list-modules", "--json"))
        names = {m["module_name"]: m.get("version", "") for m in modules}
    except (ValueError, TypeError, KeyError) as exc:
        raise EdgeBuildError(f"{path.name} list-modules --json: unreadable ({exc}).") from None
    missing = [m for m in REQUIRED_MODULES if m not in names]
    if missing:
        raise EdgeBuildError(
            f"{path.name} lacks the modules {', '.join(missing)}: not a caddy-l4 build.\n"
            "Next: rebuild with `inv build-caddy --force`."
        )
    if names["layer4"] != pins.caddy_l4:
        raise EdgeBuildError(
            f"{path.name} carries caddy-l4 {names['layer4']}, pinned {pins.caddy_l4}."
        )
    return version, _run_binary(path, "build-info")


def verify_cross(go: Path, path: Path, pins: Pins, goos: str, goarch: str) -> str:
    """Check a binary built for another arch: ELF header and Go's embedded module list."""
    header = path.read_bytes()[:20]
    machine = int.from_bytes(header[18:20], "little") if len(header) == 20 else -1
    if header[:4] != b"\x7fELF" or machine != _ELF_MACHINE.get(goarch):
        raise EdgeBuildError(f"{path.name} is not a {goos}/{goarch} ELF binary.")
    out = subprocess.run(
        [str(go), "version", "-m", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_go_env(target=False),
        check=False,
    )
    info = out.stdout.replace(f"{path}: ", "", 1)  # the temp path means nothing later
    wanted = [
        (CADDY_MODULE, pins.caddy),
        (CADDY_L4_MODULE, pins.caddy_l4),
    ]
    for module, version in wanted:
        if not re.search(rf"^\s*dep\s+{re.escape(module)}\s+{re.escape(version)}\b", info, re.M):
            raise EdgeBuildError(f"{path.name}: module {module} {version} not found in it.")
    if f"GOARCH={goarch}" not in info or f"GOOS={goos}" not in info:
        raise EdgeBuildError(f"{path.name}: not built for {goos}/{goarch}.")
    return info


def check_patched(name: str, info: str, source: Path | None) -> None:
    """A patched build must record caddy-l4 as replaced by the patched tree (and a stock
    build must not record a replacement)."""
    pattern = rf"^\s*dep\s+{re.escape(CADDY_L4_MODULE)}\s+\S+\s*\n\s*=>\s+(\S+)"
    match = re.search(pattern, info, re.M)
    if source is None and match:
        raise EdgeBuildError(
            f"{name}: caddy-l4 is replaced by {match[1]}, expected the stock module."
        )
    if source is not None and (match is None or match[1] != str(source)):
        raise EdgeBuildError(
            f"{name}: caddy-l4 is not built from the patched tree {source}.\n"
            "Next: rebuild with `inv build-caddy --force`."
        )


# ---------------------------------------------------------------- the cache


@dataclass(frozen=True)
class _Meta:
    stamp: dict[str, str]
    stamp_sha256: str
    sha256: str
    version: str
    build_info: str
    verified: str  # "native" (ran list-modules) or "cross" (ELF + go version -m)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> _Meta | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_sidecars(out: Path, meta: _Meta) -> None:
    from ..files import write_atomic

    write_atomic(out.with_name(out.name + ".sha256"), f"{meta.sha256}  {out.name}\n")
    write_atomic(out.with_name(out.name + ".build-info"), meta.build_info)
    write_atomic(out.with_name(out.name + ".stamp.json"), meta.to_json())


def _matches(binary: Path, meta: _Meta | None, stamp_id: str) -> bool:
    if meta is None or meta.stamp_sha256 != stamp_id or not binary.is_file():
        return False
    return file_sha256(binary) == meta.sha256


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- entry point


def ensure_caddy(
    goos: str = "linux",
    goarch: str = "amd64",
    *,
    force: bool = False,
    verbose: bool = False,
    pins: Pins | None = None,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    patch: ModulePatch | Literal["pins"] | None = "pins",
) -> Built:
    """A verified caddy-l4 binary for ``goos/goarch`` in ``out_dir`` (default ``caddy/bin``).

    ``patch``: the caddy-l4 patch to apply; by default the one ``caddy/pins.toml`` names,
    None for the stock module."""
    started = time.monotonic()
    if goos not in TARGET_OS or goarch not in TARGET_ARCH:
        raise UsageError(
            f"unsupported target {goos}/{goarch}: choose --os {'|'.join(TARGET_OS)} "
            f"and --arch {'|'.join(TARGET_ARCH)}"
        )
    pins = pins or load_pins()
    if patch == "pins":
        patch = load_patch()
    out_dir = out_dir or repo_root() / "caddy" / "bin"
    go = find_go()
    version = check_go(go, pins)
    stamp = build_stamp(pins, goos, goarch, version, patch)
    stamp_id = stamp_hash(stamp)
    out = out_dir / binary_name(pins, goos, goarch, patch)
    stamp_file = out.with_name(out.name + ".stamp.json")

    def built(meta: _Meta, action: str) -> Built:
        return Built(
            path=out,
            sha256=meta.sha256,
            goos=goos,
            goarch=goarch,
            pins=pins,
            version=meta.version,
            stamp=stamp_id,
            action=action,
            seconds=time.monotonic() - started,
            patch=patch,
        )

    if not force:
        meta = _Meta.read(stamp_file)
        if meta is not None and _matches(out, meta, stamp_id):
            return built(meta, "unchanged")

    cache = cache_dir("caddy", stamp_id[:32])
    cached, cached_meta = cache / "caddy", cache / "meta.json"
    runner = _Runner(progress, verbose, started)
    with _locked(cache / ".lock"):
        meta = None if force else _Meta.read(cached_meta)
        if meta is not None and _matches(cached, meta, stamp_id):
            runner.say(f"copying the cached build {stamp_id[:12]} into {out_dir}")
            _copy_atomic(cached, out)
            _write_sidecars(out, meta)
            return built(meta, "copied from cache")
        meta = _build(go, pins, goos, goarch, stamp, stamp_id, cache, runner, patch)
        _copy_atomic(cached, out)
        _write_sidecars(out, meta)
    runner.say(f"done: {out.name} sha256 {meta.sha256[:16]}…")
    return built(meta, "built")


def _build(
    go: Path,
    pins: Pins,
    goos: str,
    goarch: str,
    stamp: dict[str, str],
    stamp_id: str,
    cache: Path,
    runner: _Runner,
    patch: ModulePatch | None = None,
) -> _Meta:
    xcaddy = ensure_xcaddy(go, pins, runner)
    with_l4 = f"{CADDY_L4_MODULE}@{pins.caddy_l4}"
    step = (
        f"building caddy {pins.caddy} + caddy-l4 {pins.caddy_l4}"
        f"{' patched' if patch else ''} for {goos}/{goarch}"
    )
    source = None
    if patch is not None:
        runner.say(f"{step}: first the patched caddy-l4 source")
        source = prepare_patched_module(go, pins, patch, runner)
        with_l4 += f"={source}"
    native = (goos, goarch) == _host_target()
    fd, tmp_name = tempfile.mkstemp(prefix=".caddy.build.", dir=cache)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        env = _go_env(
            {
                "GOOS": goos,
                "GOARCH": goarch,
                "CGO_ENABLED": "0",
                "XCADDY_WHICH_GO": str(go),
                "PATH": f"{go.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        code, lines = runner.run(
            [
                str(xcaddy),
                "build",
                pins.caddy,
                "--with",
                with_l4,
                "--output",
                str(tmp),
            ],
            env=env,
            cwd=cache,
            step=step,
            markers=(
                ("Pinning versions", "resolving modules (go get)"),
                ("Build environment ready", "compiling (go build, the long step)"),
            ),
        )
        if code != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise classify_failure(f"xcaddy build (caddy {pins.caddy})", lines, pins)
        runner.say("verifying the binary")
        if native:
            version, info = verify_native(tmp, pins)
            how = "native"
        else:
            version, info = pins.caddy, verify_cross(go, tmp, pins, goos, goarch)
            how = "cross"
        check_patched(tmp.name, info, source)
        meta = _Meta(stamp, stamp_id, file_sha256(tmp), version, info, how)
        os.chmod(tmp, 0o755)
        os.replace(tmp, cache / "caddy")
        from ..files import write_atomic

        write_atomic(cache / "meta.json", meta.to_json())
        return meta
    finally:
        tmp.unlink(missing_ok=True)


def _host_target() -> tuple[str, str]:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return os.uname().sysname.lower(), arch


def describe(built: Built) -> str:
    """Lines for the operator after a build."""
    return "\n".join(
        [
            f"{built.action}: {built.path}",
            f"  caddy {built.version} + caddy-l4 {built.pins.caddy_l4}"
            + (f" + {built.patch.path.name} ({built.patch.sha256[:8]})" if built.patch else "")
            + f" for {built.goos}/{built.goarch}",
            f"  sha256 {built.sha256}",
            f"  stamp {built.stamp[:16]}… ({built.seconds:.2f}s)",
        ]
    )
