"""`inv check` on STALWART_TLS=files' PEM files: certificates made here with `cryptography`,
judged by the check, and (for the SAN, expiry, key and chain facts) by real `openssl`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tailwart import clock
from tailwart.checks import tls_files
from tailwart.findings import Finding, Status
from tests.support.doc_samples import check_sample
from tests.support.testkit import ROOT, need, write_env
from tests.support.testkit import inv as run_inv

#: the machine's time: openssl, the oracle here, judges by the machine's clock
NOW = clock.system()
HOST = "mail.example.org"
DAY = dt.timedelta(days=1)


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any


def make(
    cn: str,
    issuer: Issued | None = None,
    sans: list[str] | None = None,
    ca: bool = False,
    before: dt.datetime = NOW - DAY,
    after: dt.datetime = NOW + 90 * DAY,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root = make("Test Root", ca=True, after=NOW + 3650 * DAY)
    inter = make("Test Intermediate", root, ca=True, after=NOW + 1000 * DAY)
    return {"root": root, "inter": inter}


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def write_pair(where: Path, chain: bytes, key: bytes, key_mode: int = 0o600) -> tuple[str, str]:
    where.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = where / "fullchain.pem", where / "privkey.pem"
    cert_path.write_bytes(chain)
    cert_path.chmod(0o644)
    key_path.write_bytes(key)
    key_path.chmod(key_mode)
    if os.geteuid() == 0:
        os.chown(key_path, 2000, 2000)
    return str(cert_path), str(key_path)


def judged(cert: str, key: str, names: list[str] | None = None) -> dict[str, Finding]:
    return {f.id: f for f in tls_files.judge(cert, key, names or [HOST])}


def leaf_for(pki: dict[str, Issued], **kw: Any) -> Issued:
    kw.setdefault("sans", [HOST])
    return make(kw.pop("cn", HOST), pki["inter"], **kw)


def test_a_good_chain_passes_every_check(tmp_path: Path, pki: dict[str, Issued]) -> None:
    leaf = leaf_for(pki, sans=[HOST, "imap.example.org"])
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    got = judged(cert, key, [HOST, "imap.example.org"])
    access = "tls-files.key-file-access"
    if os.geteuid() != 0:  # the key stays the test user's 0600: 2000:2000 cannot read it
        assert got.pop(access).status is Status.ERROR
    assert {k: f.message for k, f in got.items() if f.status is not Status.OK} == {}
    assert set(got) >= {
        "tls-files.cert-file",
        "tls-files.key-file",
        "tls-files.key-match",
        "tls-files.expiry",
        "tls-files.names",
        "tls-files.chain",
        "tls-files.issuer",
    }
    assert got["tls-files.cert-file"].message.endswith(f"2 certificate(s), the first CN={HOST}")
    assert got["tls-files.key-file"].message.endswith("a EC secp256r1 private key")


@pytest.mark.parametrize(
    ("case", "rule", "status", "says"),
    [
        ("expired", "tls-files.expiry", Status.ERROR, "the certificate expired on"),
        ("expiring", "tls-files.expiry", Status.WARNING, "the certificate expires"),
        ("future", "tls-files.expiry", Status.ERROR, "is not valid before"),
        ("wrong-key", "tls-files.key-match", Status.ERROR, "belongs to no certificate in the"),
        ("missing-alias", "tls-files.names", Status.ERROR, "does not cover imap.example.org"),
        ("no-san", "tls-files.names", Status.ERROR, "has no subjectAltName"),
        ("deep-wildcard", "tls-files.names", Status.ERROR, f"does not cover {HOST}"),
        ("reversed", "tls-files.chain", Status.ERROR, "not leaf first: the key belongs to"),
        ("ca-first", "tls-files.chain", Status.ERROR, "certificate 1 (CN=Test Intermediate)"),
        ("foreign", "tls-files.chain", Status.ERROR, "did not issue certificate 1"),
        ("leaf-only", "tls-files.chain", Status.WARNING, "holds the leaf only"),
        ("self-signed", "tls-files.issuer", Status.WARNING, "self-signed"),
    ],
)
def test_each_problem_is_reported(
    tmp_path: Path, pki: dict[str, Issued], case: str, rule: str, status: Status, says: str
) -> None:
    inter = pki["inter"].cert
    names = [HOST]
    leaf = leaf_for(pki)
    chain: Callable[[Issued], bytes] = lambda lf: pem(lf.cert, inter)  # noqa: E731
    key = None
    if case == "expired":
        leaf = leaf_for(pki, before=NOW - 90 * DAY, after=NOW - DAY)
    elif case == "expiring":
        leaf = leaf_for(pki, after=NOW + 5 * DAY)
    elif case == "future":
        leaf = leaf_for(pki, before=NOW + 2 * DAY)
    elif case == "wrong-key":
        key = ec.generate_private_key(ec.SECP256R1())
    elif case == "missing-alias":
        names = [HOST, "imap.example.org"]
    elif case == "no-san":
        leaf = leaf_for(pki, sans=None)
    elif case == "deep-wildcard":  # *.example.org covers one label, never mail.x.example.org
        leaf = leaf_for(pki, cn="wild", sans=["*.org", "*.*.org"])
    elif case == "reversed":
        chain = lambda lf: pem(inter, lf.cert)  # noqa: E731
    elif case == "ca-first":
        chain = lambda lf: pem(inter, pki["root"].cert)  # noqa: E731
        key = pki["inter"].key  # the file pair of a CA: not a leaf
    elif case == "foreign":
        chain = lambda lf: pem(lf.cert, pki["root"].cert)  # noqa: E731
    elif case == "leaf-only":
        chain = lambda lf: pem(lf.cert)  # noqa: E731
    elif case == "self-signed":
        leaf = make(HOST, sans=[HOST])
        chain = lambda lf: pem(lf.cert)  # noqa: E731
    cert_path, key_path = write_pair(tmp_path, chain(leaf), key_pem(key or leaf.key))
    got = judged(cert_path, key_path, names)
    assert got[rule].status is status, got[rule].message
    assert says in got[rule].message
    assert got[rule].advice and "\n" not in got[rule].advice
    others = {k: f.status for k, f in got.items() if f.status is Status.ERROR and k != rule}
    others.pop("tls-files.key-file-access", None)
    # a CA's file pair is also not the mail host's certificate
    also = {"ca-first": {"tls-files.names"}}
    assert set(others) == also.get(case, set())


@pytest.mark.parametrize(
    ("content", "rule", "says"),
    [
        (b"", "tls-files.cert-file", "holds no PEM certificate"),
        (b"\x00\xff" * 100, "tls-files.cert-file", "holds no PEM certificate"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "tls-files.cert-file",
            "not a valid X.509 certificate",
        ),
        (b"x" * (tls_files.CERT_CAP + 1), "tls-files.cert-file", "bytes"),
    ],
)
def test_garbage_certificate_file_is_one_clear_error(
    tmp_path: Path, pki: dict[str, Issued], content: bytes, rule: str, says: str
) -> None:
    leaf = leaf_for(pki)
    cert, key = write_pair(tmp_path, content, key_pem(leaf.key))
    got = judged(cert, key)
    assert got[rule].status is Status.ERROR
    assert says in got[rule].message
    # nothing judged on a chain that did not load
    assert not {"tls-files.key-match", "tls-files.expiry", "tls-files.chain"} & set(got)


def test_garbage_and_unusable_keys(tmp_path: Path, pki: dict[str, Issued]) -> None:
    leaf = leaf_for(pki)
    chain = pem(leaf.cert, pki["inter"].cert)
    secret = leaf.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase-123"),
    )
    cases = {
        chain: "holds no PEM private key",
        secret: "is encrypted with a passphrase",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n": "does not parse",
    }
    for content, says in cases.items():
        cert, key = write_pair(tmp_path, chain, content)
        got = judged(cert, key)
        assert got["tls-files.key-file"].status is Status.ERROR
        assert says in got["tls-files.key-file"].message
        assert "tls-files.key-match" not in got
    # a key in the certificate file: an error, and its bytes are never shown
    key_bytes = key_pem(leaf.key)
    cert, key = write_pair(tmp_path, chain + key_bytes, key_bytes)
    got = judged(cert, key)
    assert got["tls-files.cert-file"].status is Status.ERROR
    text = json.dumps([f.message + f.advice for f in got.values()])
    body = key_bytes.decode().splitlines()[1]
    assert body[:20] not in text


def test_what_is_not_a_regular_file(tmp_path: Path, pki: dict[str, Issued]) -> None:
    leaf = leaf_for(pki)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    for path, says in (
        (str(tmp_path), "is a directory"),
        (str(fifo), "is a FIFO"),
        (str(tmp_path / "absent.pem"), "does not exist"),
        ("/dev/null", "is a character device"),
    ):
        got = judged(cert, path)
        assert got["tls-files.key-file"].status is Status.ERROR
        assert says in got["tls-files.key-file"].message, says
        got = judged(path, key)
        assert got["tls-files.cert-file"].status is Status.ERROR
        assert says in got["tls-files.cert-file"].message, says


def test_what_stalwart_2000_can_read(tmp_path: Path, pki: dict[str, Issued]) -> None:
    """By the owner/group/other bits, as uid 2000 gid 2000 (the container's user)."""
    leaf = leaf_for(pki)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    got = judged(cert, key)
    assert got["tls-files.cert-file-access"].status is Status.OK
    st = os.stat(key)
    mine = st.st_uid == 2000
    assert (got["tls-files.key-file-access"].status is Status.OK) == mine
    os.chmod(key, 0o644)
    got = judged(cert, key)
    assert got["tls-files.key-file-access"].status is Status.WARNING
    assert "every user on the host can read the private key" in (
        got["tls-files.key-file-access"].message
    )
    os.chmod(key, 0o600)
    os.chmod(cert, 0o600)
    got = judged(cert, key)
    if os.stat(cert).st_uid != 2000:
        assert got["tls-files.cert-file-access"].status is Status.ERROR
        assert "cannot read it" in got["tls-files.cert-file-access"].message


# ---------------------------------------------------------------- openssl as the oracle


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("openssl")
    need(binary is not None, "openssl is not installed")
    assert binary is not None
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30, check=False)


def made_key(where: Path, kind: str) -> Path:
    """A private key file made by the tool that owns its format; that tool reads it back
    as a private key (the oracle that the block is one)."""
    path = where / f"{kind}.key"
    if kind == "openssh":
        binary = shutil.which("ssh-keygen")
        need(binary is not None, "ssh-keygen is not installed")
        assert binary is not None
        keygen = subprocess.run(
            [binary, "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert keygen.returncode == 0, keygen.stderr
        public = subprocess.run(
            [binary, "-y", "-f", str(path)], capture_output=True, timeout=30, check=False
        )
        assert public.returncode == 0 and public.stdout.startswith(b"ssh-ed25519 ")
        return path
    algorithm, traditional = {
        "pkcs8": ("ED25519", False),
        "encrypted": ("ED25519", False),
        "rsa": ("RSA", True),
        "ec": ("EC", True),
        "dsa": ("DSA", True),
    }[kind]
    options = {
        "RSA": ["-pkeyopt", "rsa_keygen_bits:2048"],
        "EC": ["-pkeyopt", "ec_paramgen_curve:P-256"],
        "ED25519": [],
    }
    if algorithm == "DSA":
        params = where / "dsa.params"
        made = openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt",
                       "dsa_paramgen_bits:2048", "-out", str(params))  # fmt: skip
        assert made.returncode == 0, made.stderr
        made = openssl("genpkey", "-paramfile", str(params), "-out", str(path))
    else:
        cipher = ["-aes256", "-pass", "pass:secret-pass"] if kind == "encrypted" else []
        made = openssl("genpkey", "-algorithm", algorithm, *options[algorithm], *cipher,
                       "-out", str(path))  # fmt: skip
    assert made.returncode == 0, made.stderr
    if traditional:
        pkcs8 = path.rename(where / f"{kind}.pkcs8")
        made = openssl("pkey", "-in", str(pkcs8), "-traditional", "-out", str(path))
        assert made.returncode == 0, made.stderr
    back = openssl("pkey", "-in", str(path), "-passin", "pass:secret-pass", "-noout")
    assert back.returncode == 0, back.stderr
    return path


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("pkcs8", "PRIVATE KEY"),
        ("encrypted", "ENCRYPTED PRIVATE KEY"),
        ("rsa", "RSA PRIVATE KEY"),
        ("ec", "EC PRIVATE KEY"),
        ("dsa", "DSA PRIVATE KEY"),
        ("openssh", "OPENSSH PRIVATE KEY"),
    ],
)
def test_a_private_key_of_any_kind_in_the_chain_file_is_refused(
    tmp_path: Path, pki: dict[str, Issued], kind: str, label: str
) -> None:
    leaf = leaf_for(pki)
    stray = made_key(tmp_path, kind).read_bytes()
    assert stray.startswith(f"-----BEGIN {label}-----".encode())
    chain = pem(leaf.cert, pki["inter"].cert)
    for content in (chain + stray, stray + chain):
        cert, key = write_pair(tmp_path / "pair", content, key_pem(leaf.key))
        got = judged(cert, key)
        finding = got["tls-files.cert-file"]
        assert finding.status is Status.ERROR
        assert finding.message == (
            f"STALWART_TLS_CERT_FILE: {cert} also holds a private key ({label} block)"
        )
        assert "STALWART_TLS_KEY_FILE" in finding.advice
        shown = json.dumps([f.message + f.advice for f in got.values()])
        assert all(line not in shown for line in stray.decode().splitlines()[1:-1])
        assert got["tls-files.names"].status is Status.OK  # the chain is still judged


@pytest.mark.parametrize("mode", [0o644, 0o664, 0o646, 0o666, 0o640, 0o660, 0o620, 0o602])
def test_a_chain_or_key_others_can_write_is_an_error(
    tmp_path: Path, pki: dict[str, Issued], mode: int
) -> None:
    """Whether group or others may write: GNU find's -perm /g+w,o+w is the oracle."""
    leaf = leaf_for(pki)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    for path, rule, what in (
        (cert, "tls-files.cert-file-access", "certificate chain"),
        (key, "tls-files.key-file-access", "private key"),
    ):
        os.chmod(path, mode)
        oracle = subprocess.run(
            ["find", path, "-perm", "/g+w,o+w"], capture_output=True, text=True, check=True
        )
        writable = oracle.stdout.strip() == path
        finding = judged(cert, key)[rule]
        assert ("can write it" in finding.message) == writable, (oct(mode), finding.message)
        if writable:
            assert finding.status is Status.ERROR
            assert f"so can replace the {what} Stalwart serves" in finding.message
            assert finding.advice.startswith("chmod go-w FILE")
            others = "every user on the host" if mode & 0o002 else "group "
            assert others in finding.message
        os.chmod(path, 0o644 if path == cert else 0o600)


@pytest.mark.parametrize(
    ("sans", "host"),
    [
        ([HOST], HOST),
        (["*.example.org"], HOST),
        (["*.example.org"], "a.mail.example.org"),
        (["*.example.org"], "example.org"),
        (["mail.example.com"], HOST),
        (["MAIL.Example.ORG"], HOST),
        (["*.mail.example.org", "imap.example.org"], "imap.example.org"),
    ],
)
def test_names_agree_with_openssl_checkhost(
    tmp_path: Path, pki: dict[str, Issued], sans: list[str], host: str
) -> None:
    leaf = leaf_for(pki, cn="leaf", sans=sans)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    oracle = openssl("x509", "-in", cert, "-noout", "-checkhost", host)
    assert oracle.returncode == 0, oracle.stderr
    covered = "does match certificate" in oracle.stdout
    assert covered != ("does NOT match" in oracle.stdout)
    got = judged(cert, key, [host])["tls-files.names"]
    assert (got.status is Status.OK) == covered, (sans, host, oracle.stdout)


@pytest.mark.parametrize("days", [-3, 5, 13, 15, 60])
def test_expiry_and_chain_agree_with_openssl(
    tmp_path: Path, pki: dict[str, Issued], days: int
) -> None:
    leaf = leaf_for(pki, before=NOW - 100 * DAY, after=NOW + days * DAY)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    got = judged(cert, key)
    expired = openssl("x509", "-in", cert, "-noout", "-checkend", "0").returncode != 0
    soon = openssl("x509", "-in", cert, "-noout", "-checkend", str(14 * 86400)).returncode != 0
    want = Status.ERROR if expired else Status.WARNING if soon else Status.OK
    assert got["tls-files.expiry"].status is want
    # the chain file verifies against the root with openssl exactly when it is not expired
    root = tmp_path / "root.pem"
    root.write_bytes(pem(pki["root"].cert))
    verify = openssl("verify", "-CAfile", str(root), "-untrusted", cert, cert)
    assert (verify.returncode == 0) == (not expired), verify.stdout + verify.stderr
    assert got["tls-files.chain"].status is Status.OK
    # the key belongs to the leaf: openssl's public keys agree
    pub_cert = openssl("x509", "-in", cert, "-noout", "-pubkey").stdout
    pub_key = openssl("pkey", "-in", key, "-pubout").stdout
    assert pub_cert == pub_key and pub_cert
    assert got["tls-files.key-match"].status is Status.OK


# ---------------------------------------------------------------- through inv check


def test_inv_check_judges_the_files_and_exits_2_on_an_expired_one(
    tmp_path: Path, pki: dict[str, Issued], example_values: dict[str, str]
) -> None:
    tree = tmp_path / "tree"
    for part in ("compose", "config"):
        shutil.copytree(ROOT / part, tree / part)
    leaf = leaf_for(pki, sans=[HOST, "imap.example.org"])
    cert, key = write_pair(tmp_path / "pki", pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    values = {
        **example_values,
        "MAIL_HOSTNAME": HOST,
        "MAIL_HOSTNAME_ALIASES": "imap.example.org",
        "STALWART_TLS": "files",
        "STALWART_TLS_CERT_FILE": cert,
        "STALWART_TLS_KEY_FILE": key,
    }
    env = write_env(tmp_path / "files.env", values)

    def check() -> tuple[int, dict[str, dict[str, str]], str]:
        proc = run_inv("check", f"--env-file={env}", "--json", cwd=tree, timeout=120)
        assert "Traceback" not in proc.stdout + proc.stderr
        rows = json.loads(proc.stdout)["findings"]
        return proc.returncode, {r["id"]: r for r in rows if r["group"] == "tls-files"}, proc.stdout

    _, got, _ = check()
    assert {k: r["status"] for k, r in got.items() if r["status"] == "error"} in (
        {},
        {"tls-files.key-file-access": "error"},  # not root: the key stays the test user's
    )
    assert got["tls-files.names"]["message"] == f"covers {HOST}, imap.example.org"
    expired = leaf_for(pki, sans=[HOST], before=NOW - 90 * DAY, after=NOW - DAY)
    write_pair(tmp_path / "pki", pem(expired.cert, pki["inter"].cert), key_pem(expired.key))
    code, got, text = check()
    assert code == 2  # the operator's file: bad input, as `inv up` refuses it
    assert got["tls-files.expiry"]["status"] == "error"
    assert got["tls-files.names"]["status"] == "error"
    assert "imap.example.org" in got["tls-files.names"]["message"]
    body = key_pem(expired.key).decode().splitlines()[1]
    assert body[:20] not in text

    # docs/guides/tls.md's sample: that certificate written after its intermediate, the
    # key readable by every user; the table as the operator sees it
    write_pair(tmp_path / "pki", pem(pki["inter"].cert, expired.cert), key_pem(expired.key))
    Path(key).chmod(0o644)
    table = run_inv("check", f"--env-file={env}", cwd=tree, timeout=120).stdout
    ours = [
        line
        for at, line in enumerate(table.splitlines())
        if " tls-files." in line
        or (line.lstrip().startswith("→") and " tls-files." in table.splitlines()[at - 1])
    ]
    check_sample("tls-files-check", "\n".join(ours))


def test_a_key_this_user_cannot_read_is_a_warning_not_a_verdict(
    tmp_path: Path, pki: dict[str, Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    """inv up may run as a docker-group user that cannot read a 2000:2000 0400 key:
    its content goes unchecked (a warning), its mode bits are still judged."""
    from tailwart import files

    leaf = leaf_for(pki)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))
    real = files.read_bounded

    def denied(path: Path | str, cap: int) -> Any:
        if str(path) == key:  # what EACCES on open makes of it
            raise files.ReadRefused("unreadable", f"{path} cannot be read: Permission denied")
        return real(path, cap)

    monkeypatch.setattr(files, "read_bounded", denied)
    got = judged(cert, key)
    assert got["tls-files.key-file"].status is Status.WARNING
    assert got["tls-files.key-file"].message == (
        f"STALWART_TLS_KEY_FILE: {key} cannot be read: Permission denied: its content is not "
        "checked"
    )
    assert "tls-files.key-file-access" in got
    assert "tls-files.key-match" not in got
    assert got["tls-files.names"].status is Status.OK  # the chain is still judged


def test_a_certificate_that_fails_to_parse_on_demand_is_one_error(
    tmp_path: Path, pki: dict[str, Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    """cryptography parses extensions lazily: a broken one surfaces mid-judgement."""
    leaf = leaf_for(pki)
    cert, key = write_pair(tmp_path, pem(leaf.cert, pki["inter"].cert), key_pem(leaf.key))

    def broken(_: Any) -> list[str]:
        raise ValueError("error parsing asn1 value")

    monkeypatch.setattr(tls_files, "dns_names", broken)
    got = tls_files.judge(cert, key, [HOST])
    assert len({f.id for f in got}) == len(got)  # one finding per id
    errors = [f for f in got if f.status is Status.ERROR and "access" not in f.id]
    assert [(f.id, f.message) for f in errors] == [
        (
            "tls-files.cert-file",
            f"STALWART_TLS_CERT_FILE: {cert} holds a certificate whose extensions or public key "
            "do not parse",
        )
    ]


def test_no_garbage_raises(tmp_path: Path) -> None:
    """Random bytes, and random base64 inside PEM armour: findings, never an exception."""
    import base64

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=st.binary(max_size=600), armour=st.sampled_from(["CERTIFICATE", "PRIVATE KEY"]))
    def check(body: bytes, armour: str) -> None:
        begin, end = f"-----BEGIN {armour}-----\n", f"-----END {armour}-----\n"
        data = begin.encode() + base64.encodebytes(body) + end.encode()
        for content in (body, data):
            path = tmp_path / "pem"
            path.write_bytes(content)
            got = tls_files.judge(str(path), str(path), [HOST])
            assert any(f.status is Status.ERROR for f in got)

    check()
