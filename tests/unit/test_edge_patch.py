"""The caddy-l4 patch pipeline without network: pins, Go's h1 hash, fetch → verify → patch
→ verify with a fake ``go mod download``, the name and stamp of a patched build.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from tailwart.edge import build
from tailwart.edge.build import (
    EdgeBuildError,
    ModulePatch,
    Pins,
    PinsError,
    binary_name,
    build_stamp,
    check_patched,
    dirhash_h1,
    load_patch,
    stamp_hash,
)

ROOT = Path(__file__).resolve().parents[2]
PINS = Pins(caddy="v2.11.9", caddy_l4="v0.1.2", xcaddy="v0.4.5", min_go="1.25.1")
PREFIX = "github.com/mholt/caddy-l4@v0.1.2"
needs_patch = pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch not installed")


def h1(files: dict[str, bytes]) -> str:
    """Go's Hash1, written from its documentation: for each file in name order the line
    '<hex sha256>  <name>\\n'; sha256 of all lines; 'h1:' + base64."""
    summary = hashlib.sha256()
    for name in sorted(files):
        summary.update(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def test_h1_follows_gos_definition() -> None:
    files = {f"{PREFIX}/b.go": b"package b\n", f"{PREFIX}/a/x.go": b"package a\n"}
    assert dirhash_h1(files.items()) == h1(files)
    assert dirhash_h1(reversed(list(files.items()))) == h1(files)  # order does not matter


def test_h1_of_the_real_module_matches_its_go_sum_line() -> None:
    """Against Go's own checksum: the module zip in the local module cache, if present."""
    zip_path = (
        Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")
        / "cache/download/github.com/mholt/caddy-l4/@v/v0.1.2.zip"
    )
    if not zip_path.is_file():
        pytest.skip("caddy-l4 v0.1.2 is not in the local Go module cache")
    with zipfile.ZipFile(zip_path) as archive:
        files = [(m.filename, archive.read(m)) for m in archive.infolist() if not m.is_dir()]
    pinned = load_patch(ROOT)
    assert pinned is not None
    # caddy-l4's go.sum line, as sum.golang.org records it
    assert dirhash_h1(files) == "h1:23rhxVar8F5Sl7sYKDgEReI1yT//+e8J7EtMwO2yJpU="
    assert pinned.module_sum == "h1:23rhxVar8F5Sl7sYKDgEReI1yT//+e8J7EtMwO2yJpU="


def test_the_committed_patch_pin_matches_the_file() -> None:
    patch = load_patch(ROOT)
    assert patch is not None
    assert patch.path.parent == ROOT / "caddy" / "patches"
    assert hashlib.sha256(patch.path.read_bytes()).hexdigest() == patch.sha256
    text = patch.path.read_text()
    assert "layer4/connection.go" in text and "func (cx *Connection) WriteTo" in text
    assert "_test.go" in text  # the patch carries its own Go test


def _pins_dir(tmp_path: Path, table: str, patch_text: str | None = "x\n") -> Path:
    caddy = tmp_path / "caddy"
    (caddy / "patches").mkdir(parents=True)
    if patch_text is not None:
        (caddy / "patches" / "p.patch").write_text(patch_text)
    (caddy / "pins.toml").write_text(
        'caddy = "v2.11.9"\ncaddy_l4 = "v0.1.2"\nxcaddy = "v0.4.5"\nmin_go = "1.25.1"\n' + table
    )
    return tmp_path


def test_no_patch_table_means_the_stock_module(tmp_path: Path) -> None:
    assert load_patch(_pins_dir(tmp_path, "")) is None


def test_bad_patch_table_reports_every_problem_with_exit_2(tmp_path: Path) -> None:
    root = _pins_dir(
        tmp_path,
        '[caddy_l4_patch]\nfile = "../../etc/passwd"\nsha256 = "abc"\n'
        'module_sum = "md5:x"\nextra = 1\n',
    )
    with pytest.raises(PinsError) as err:
        load_patch(root)
    text = str(err.value)
    assert err.value.exit_code == 2
    for fragment in (
        "caddy_l4_patch.patched_sum: missing",
        "caddy_l4_patch.extra: unknown key",
        "caddy_l4_patch.sha256 = 'abc'",
        "caddy_l4_patch.module_sum = 'md5:x'",
        "expected a path under caddy/",
    ):
        assert fragment in text
    # the unpatched pins stay readable: the table is not a pin of Pins
    assert build.load_pins(root) == PINS


def test_a_changed_patch_file_is_refused(tmp_path: Path) -> None:
    sums = f'module_sum = "{h1({})}"\npatched_sum = "{h1({})}"\n'
    root = _pins_dir(
        tmp_path,
        f'[caddy_l4_patch]\nfile = "patches/p.patch"\nsha256 = "{"0" * 64}"\n' + sums,
    )
    with pytest.raises(PinsError, match="its sha256 is"):
        load_patch(root)
    missing = _pins_dir(
        tmp_path / "m",
        f'[caddy_l4_patch]\nfile = "patches/none.patch"\nsha256 = "{"0" * 64}"\n' + sums,
    )
    with pytest.raises(PinsError, match="no such file"):
        load_patch(missing)


def _patch(path: Path, sha: str = "1" * 64, patched: str = "h1:x") -> ModulePatch:
    return ModulePatch(path, sha, h1({}), patched)


def test_name_and_stamp_record_the_patch(tmp_path: Path) -> None:
    one = _patch(tmp_path / "a.patch", "ab12cd34" + "0" * 56)
    two = _patch(tmp_path / "b.patch", "ffee0011" + "0" * 56)
    assert (
        binary_name(PINS, "linux", "amd64", one) == "caddy-v2.11.9-l4-v0.1.2-pab12cd34-linux-amd64"
    )
    assert binary_name(PINS, "linux", "amd64") == "caddy-v2.11.9-l4-v0.1.2-linux-amd64"
    stamps = {
        stamp_hash(build_stamp(PINS, "linux", "amd64", "go1.26.8", p)) for p in (None, one, two)
    }
    assert len(stamps) == 3
    assert build_stamp(PINS, "linux", "amd64", "go1.26.8", one)["caddy_l4_patch"] == one.sha256


MODULE = {
    "go.mod": b"module github.com/mholt/caddy-l4\n",
    "layer4/connection.go": b"package layer4\n\nfunc Copy() int {\n\treturn 1\n}\n",
}
#: a unified diff (its context line for the blank line is a single space)
PATCH = "\n".join(
    [
        "--- a/layer4/connection.go",
        "+++ b/layer4/connection.go",
        "@@ -1,5 +1,5 @@",
        " package layer4",
        " ",
        " func Copy() int {",
        "-\treturn 1",
        "+\treturn 2",
        " }",
        "",
    ]
)


def _fake_module(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, Path]:
    """A module zip and a fake `go` whose `mod download -json` reports it."""
    zip_path = tmp_path / "v0.1.2.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"{PREFIX}/{name}", data)
    info = {"Path": "github.com/mholt/caddy-l4", "Version": "v0.1.2", "Zip": str(zip_path)}
    info["Sum"] = h1({f"{PREFIX}/{n}": d for n, d in MODULE.items()})
    go = tmp_path / "bin" / "go"
    go.parent.mkdir()
    go.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(info)}\nEOF\n")
    go.chmod(0o755)
    return go, zip_path


def _runner() -> build._Runner:
    return build._Runner(None, verbose=False, started=time.monotonic())


@needs_patch
def test_fetch_verify_patch_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILWART_CACHE", str(tmp_path / "cache"))
    go, _ = _fake_module(tmp_path, MODULE)
    (tmp_path / "p.patch").write_text(PATCH)
    patched_files = {**MODULE, "layer4/connection.go": MODULE["layer4/connection.go"]}
    patched_files["layer4/connection.go"] = patched_files["layer4/connection.go"].replace(
        b"return 1", b"return 2"
    )
    patch = ModulePatch(
        tmp_path / "p.patch",
        hashlib.sha256(PATCH.encode()).hexdigest(),
        h1({f"{PREFIX}/{n}": d for n, d in MODULE.items()}),
        h1({f"{PREFIX}/{n}": d for n, d in patched_files.items()}),
    )
    tree = build.prepare_patched_module(go, PINS, patch, _runner())
    assert tree == tmp_path / "cache" / "src" / f"caddy-l4-v0.1.2-p{patch.sha256[:16]}"
    assert (tree / "layer4" / "connection.go").read_bytes() == patched_files["layer4/connection.go"]
    assert sorted(p.name for p in tree.rglob("*") if p.is_file()) == ["connection.go", "go.mod"]
    # a second call reuses the verified tree; a tampered tree is rebuilt
    assert build.prepare_patched_module(go, PINS, patch, _runner()) == tree
    (tree / "go.mod").write_text("module evil\n")
    build.prepare_patched_module(go, PINS, patch, _runner())
    assert (tree / "go.mod").read_bytes() == MODULE["go.mod"]


@needs_patch
def test_a_module_that_does_not_match_its_pin_is_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAILWART_CACHE", str(tmp_path / "cache"))
    go, _ = _fake_module(tmp_path, {**MODULE, "go.mod": b"module evil\n"})
    (tmp_path / "p.patch").write_text(PATCH)
    patch = _patch(tmp_path / "p.patch")
    patch = ModulePatch(
        patch.path, patch.sha256, h1({f"{PREFIX}/{n}": d for n, d in MODULE.items()}), "h1:x"
    )
    with pytest.raises(EdgeBuildError, match="does not match its pin") as err:
        build.prepare_patched_module(go, PINS, patch, _runner())
    assert "Next:" in str(err.value)
    assert not list((tmp_path / "cache" / "src").iterdir())


@needs_patch
def test_a_patch_that_does_not_apply_or_hashes_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAILWART_CACHE", str(tmp_path / "cache"))
    go, _ = _fake_module(tmp_path, MODULE)
    module_sum = h1({f"{PREFIX}/{n}": d for n, d in MODULE.items()})
    bad = tmp_path / "bad.patch"
    bad.write_text(PATCH.replace("-\treturn 1", "-\treturn 7"))
    with pytest.raises(EdgeBuildError, match="does not apply"):
        build.prepare_patched_module(
            go, PINS, ModulePatch(bad, "2" * 64, module_sum, "h1:x"), _runner()
        )
    good = tmp_path / "p.patch"
    good.write_text(PATCH)
    with pytest.raises(EdgeBuildError, match="hashes to h1:"):
        build.prepare_patched_module(
            go, PINS, ModulePatch(good, "3" * 64, module_sum, "h1:x"), _runner()
        )
    assert not list((tmp_path / "cache" / "src").iterdir())


def test_build_info_must_show_the_patched_tree(tmp_path: Path) -> None:
    tree = tmp_path / "src" / "caddy-l4-v0.1.2-pabc"
    info = (
        "path\tcaddy\n"
        "dep\tgithub.com/mholt/caddy-l4\tv0.1.2\n"
        f"=>\t{tree}\t(devel)\t\n"
        "dep\tgo.uber.org/zap\tv1.27.0\th1:x=\n"
    )
    check_patched("caddy", info, tree)
    with pytest.raises(EdgeBuildError, match="not built from the patched tree"):
        check_patched("caddy", info, tmp_path / "other")
    with pytest.raises(EdgeBuildError, match="expected the stock module"):
        check_patched("caddy", info, None)
    stock = "dep\tgithub.com/mholt/caddy-l4\tv0.1.2\th1:y=\ndep\tgo.uber.org/zap\tv1.27.0\th1:x=\n"
    check_patched("caddy", stock, None)
    with pytest.raises(EdgeBuildError, match="not built from the patched tree"):
        check_patched("caddy", stock, tree)
