"""A test double of Stalwart: real mail servers on loopback that REQUIRE a PROXY v2 header.

Not part of the product: it stands where Stalwart sits behind the edge, for ``inv demo``,
the tests and the benchmarks (and, as an image, in the tests' Docker world).

Every port refuses a connection that does not start with a valid PROXY v2 header,
like Stalwart with ``server.proxy.trusted-networks``.
Given per-port ``trusted`` networks, it behaves as Stalwart v0.16's listeners do:
a connection from a trusted address must carry PROXY v2; any other is served as a
direct connection (its TCP peer is the client).

- 25, 587: aiosmtpd with its own PROXY protocol support (``proxy_protocol_timeout``),
  STARTTLS offered; messages are kept.
- 465: implicit TLS. The PROXY header precedes the TLS handshake, so the header is
  read here byte-exactly (never past its end), parsed by aiosmtpd's parser, and the
  socket is then handed to aiosmtpd over TLS.
- 143, 993: a small IMAP greeter (``* OK`` first, CAPABILITY/NOOP/ID/LOGOUT), the
  same PROXY handling, TLS on 993.

Servers run on an asyncio loop in a background thread, so callers stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import clock

#: (name, port) of the Stalwart mail listeners this double imitates. Stated here, not
#: taken from the edge's render module: a double sharing the tables of the code it tests
#: would repeat their mistakes.
MAIL_LISTENERS: tuple[tuple[str, int], ...] = (
    ("smtp", 25),
    ("submissions", 465),
    ("submission", 587),
    ("imap", 143),
    ("imaps", 993),
)
#: the listeners that speak TLS first (on the others, STARTTLS)
IMPLICIT_TLS_PORTS = frozenset({465, 993})
#: the 12-byte PROXY v2 signature
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
SERVICE_BY_PORT = {port: name for name, port in MAIL_LISTENERS}
SMTP_PORTS = frozenset({25, 465, 587})
HEADER_TIMEOUT = 10.0
DEFAULT_HOSTNAME = "mailbox.tailwart.test"


@dataclass(frozen=True)
class Seen:
    """One connection as the mailbox saw it."""

    port: int  #: the mail port (25, 465, …)
    peer: tuple[str, int]  #: the TCP peer: the edge's own address
    src: tuple[str, int] | None  #: the client, as carried by PROXY v2
    dst: tuple[str, int] | None  #: the address the client dialled (the edge's listener)
    error: str = ""  #: why the connection was refused ("" = accepted)
    direct: bool = False  #: served without a PROXY header (the peer is not trusted)

    @property
    def service(self) -> str:
        return SERVICE_BY_PORT.get(self.port, str(self.port))


@dataclass(frozen=True)
class Message:
    """A message the mailbox accepted."""

    port: int
    client: tuple[str, int] | None  #: PROXY v2 source of the session
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    hostname: str


def make_self_signed(
    directory: Path, hostname: str = DEFAULT_HOSTNAME, days: float = 1
) -> TlsFiles:
    """A throwaway self-signed certificate for ``hostname`` (the mailbox's TLS identity)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = clock.system()  # real TLS stacks judge it by the machine's clock
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "mailbox.crt", directory / "mailbox.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return TlsFiles(cert_path, key_path, hostname)


def client_tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """A client context that trusts exactly the mailbox's certificate."""
    ctx = ssl.create_default_context(cafile=str(tls.cert))
    return ctx


class _BytesReader:
    """aiosmtpd's parser reads through this: the header bytes, already read exactly."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, n: int = -1) -> bytes:
        n = len(self._data) if n < 0 else n
        out, self._data = self._data[:n], self._data[n:]
        return out

    async def readexactly(self, n: int) -> bytes:
        if len(self._data) < n:
            raise asyncio.IncompleteReadError(self._data, n)
        return await self.read(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        idx = self._data.find(separator)
        if idx < 0:
            raise asyncio.IncompleteReadError(self._data, None)
        return await self.read(idx + len(separator))


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed inside the PROXY header")
        buf += chunk
    return buf


async def read_proxy_v2(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Any:
    """Read exactly one PROXY v2 header from ``sock`` and parse it with aiosmtpd's parser.

    Returns aiosmtpd's ``ProxyData``; raises ConnectionError when no valid v2 header came.
    """
    from aiosmtpd.proxy_protocol import get_proxy

    fixed = await _recv_exactly(loop, sock, 16)
    if fixed[:12] != V2_SIGNATURE:
        raise ConnectionError("no PROXY v2 header (the first bytes were not its signature)")
    (length,) = struct.unpack("!H", fixed[14:16])
    rest = await _recv_exactly(loop, sock, length)
    data = await get_proxy(_BytesReader(fixed + rest))
    if not data.valid or data.version != 2:
        raise ConnectionError(f"invalid PROXY v2 header: {data.error or 'not v2'}")
    return data


def _endpoint(addr: Any, port: Any) -> tuple[str, int] | None:
    if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address) and isinstance(port, int):
        return str(addr), port
    return None


class _ImapGreeter(asyncio.Protocol):
    """Just enough IMAP4rev1 to prove the wire: greeting, CAPABILITY, NOOP, ID, LOGOUT."""

    def __init__(self, hostname: str, on_close: Callable[[asyncio.Protocol], None]) -> None:
        self.hostname = hostname
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.on_close = on_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            f"* OK [CAPABILITY IMAP4rev1 ID] {self.hostname} tailwart stand-in ready\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer and self.transport is not None:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self._command(line.decode("utf-8", "replace"))

    def _command(self, line: str) -> None:
        assert self.transport is not None
        tag, _, rest = line.partition(" ")
        command = rest.split(" ", 1)[0].upper()
        out = {
            "CAPABILITY": "* CAPABILITY IMAP4rev1 ID\r\n{t} OK CAPABILITY completed",
            "NOOP": "{t} OK NOOP completed",
            "ID": '* ID ("name" "tailwart-standin")\r\n{t} OK ID completed',
            "LOGOUT": "* BYE logging out\r\n{t} OK LOGOUT completed",
        }.get(command, "{t} BAD not supported by the stand-in mailbox")
        self.transport.write(out.format(t=tag or "*").encode() + b"\r\n")
        if command == "LOGOUT":
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_close(self)


@dataclass
class _State:
    seen: list[Seen] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def add_seen(self, seen: Seen) -> None:
        with self.changed:
            self.seen.append(seen)
            self.changed.notify_all()

    def add_message(self, message: Message) -> None:
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()


class _SmtpHandler:
    """aiosmtpd handler: requires PROXY v2, keeps what it saw and every message."""

    def __init__(self, state: _State, port: int) -> None:
        self.state = state
        self.port = port

    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy: Any) -> bool:
        peer = tuple(session.peer[:2])
        if not proxy or proxy.version != 2:
            self.state.add_seen(Seen(self.port, peer, None, None, "no valid PROXY v2 header"))
            return False
        src = _endpoint(proxy.src_addr, proxy.src_port)
        dst = _endpoint(proxy.dst_addr, proxy.dst_port)
        self.state.add_seen(Seen(self.port, peer, src, dst))
        server.tailwart_proxy = proxy  # survives STARTTLS, which starts a new session
        return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        proxy = session.proxy_data or getattr(server, "tailwart_proxy", None)
        # no PROXY data only on a direct connection (a PROXY-required one is refused first)
        client = _endpoint(proxy.src_addr, proxy.src_port) if proxy else tuple(session.peer[:2])
        self.state.add_message(
            Message(
                self.port,
                client,
                str(envelope.mail_from),
                tuple(envelope.rcpt_tos),
                bytes(envelope.content),
            )
        )
        return "250 2.0.0 Ok: queued by the tailwart stand-in mailbox"


class StandinMailbox:
    """The five mail ports on ``host``, each requiring PROXY v2. Use as a context manager."""

    def __init__(
        self,
        tls: TlsFiles,
        host: str = "127.0.0.2",
        ports: Mapping[int, int] | None = None,
        only: tuple[int, ...] | None = None,
        data_size_limit: int = 64 * 1024 * 1024,
        trusted: Mapping[int, tuple[str, ...]] | None = None,
    ) -> None:
        """``trusted``: mail port → networks that must send PROXY v2 (others connect
        directly); None: every source must send it on every port."""
        self.tls = tls
        self.host = host
        self.wanted = dict(ports or {})
        self.trusted = (
            None
            if trusted is None
            else {p: tuple(ipaddress.ip_network(n) for n in nets) for p, nets in trusted.items()}
        )
        self.only = only or tuple(port for _, port in MAIL_LISTENERS)
        self.data_size_limit = data_size_limit
        self.ports: dict[int, int] = {}
        self._state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(str(tls.cert), str(tls.key))

    # -- what it saw
    @property
    def seen(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.seen)

    @property
    def messages(self) -> list[Message]:
        with self._state.lock:
            return list(self._state.messages)

    def wait_for(
        self, predicate: Callable[[list[Seen], list[Message]], bool], timeout: float
    ) -> bool:
        """Block until ``predicate(seen, messages)`` holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while not predicate(self._state.seen, self._state.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.changed.wait(left)
            return True

    # -- lifecycle
    def __enter__(self) -> StandinMailbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> dict[int, int]:
        """Start every server; returns mail port → bound port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="standin", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(15)
        except BaseException:
            self.stop()
            raise
        return dict(self.ports)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    async def _start(self) -> None:
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        for port in self.only:
            bind = self.wanted.get(port, 0)
            if port in (25, 587) and self.trusted is None:
                handler = _SmtpHandler(self._state, port)
                server = await loop.create_server(
                    lambda h=handler: self._track(  # type: ignore[misc]
                        SMTP(
                            h,
                            hostname=self.tls.hostname,
                            tls_context=self._ctx,
                            proxy_protocol_timeout=HEADER_TIMEOUT,
                            data_size_limit=self.data_size_limit,
                            loop=loop,
                        )
                    ),
                    self.host,
                    bind,
                    reuse_address=True,
                )
                self._servers.append(server)
                self.ports[port] = server.sockets[0].getsockname()[1]
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, bind))
                sock.listen(256)
                sock.setblocking(False)
                self._listeners.append(sock)
                self.ports[port] = sock.getsockname()[1]
                self._spawn(self._accept_loop(sock, port))

    def _track(self, protocol: Any) -> Any:
        self._protocols.add(protocol)
        return protocol

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket, port: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            self._spawn(self._serve_proxied(conn, port))

    def _proxied_from(self, port: int, peer: tuple[str, int]) -> bool:
        """Whether a connection from ``peer`` must start with PROXY v2 (Stalwart's rule)."""
        if self.trusted is None:
            return True
        address = ipaddress.ip_address(peer[0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.trusted.get(port, ()))

    async def _serve_proxied(self, conn: socket.socket, port: int) -> None:
        """PROXY v2 first (read exactly) when the peer is trusted, then TLS if implicit, then
        the protocol (every port with ``trusted``; else 465/143/993)."""
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()
        peer = conn.getpeername()[:2]
        proxy: Any = None
        if not self._proxied_from(port, peer):
            self._state.add_seen(Seen(port, peer, peer, None, direct=True))
        else:
            try:
                proxy = await asyncio.wait_for(read_proxy_v2(loop, conn), HEADER_TIMEOUT)
            except (ConnectionError, TimeoutError, OSError) as exc:
                self._state.add_seen(Seen(port, peer, None, None, str(exc) or "timeout"))
                conn.close()
                return
            src = _endpoint(proxy.src_addr, proxy.src_port)
            self._state.add_seen(Seen(port, peer, src, _endpoint(proxy.dst_addr, proxy.dst_port)))
        ctx = self._ctx if port in IMPLICIT_TLS_PORTS else None
        factory: Callable[[], asyncio.BaseProtocol]
        if port in SMTP_PORTS:
            state = self._state

            class _Proxied(SMTP):
                def _create_session(self) -> Any:
                    session = super()._create_session()
                    session.proxy_data = proxy
                    return session

            handler = _SmtpHandler(state, port)
            factory = lambda: _Proxied(  # noqa: E731
                handler,
                hostname=self.tls.hostname,
                tls_context=None if port in IMPLICIT_TLS_PORTS else self._ctx,
                data_size_limit=self.data_size_limit,
                loop=loop,
            )
        else:
            factory = lambda: _ImapGreeter(self.tls.hostname, self._forget)  # noqa: E731
        try:
            transport, _ = await loop.connect_accepted_socket(
                factory, conn, ssl=ctx, ssl_handshake_timeout=HEADER_TIMEOUT if ctx else None
            )
        except (OSError, ssl.SSLError, TimeoutError):
            conn.close()
            return
        self._transports.add(transport)

    def _forget(self, protocol: asyncio.Protocol) -> None:
        self._transports = {t for t in self._transports if not t.is_closing()}

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for sock in self._listeners:
            sock.close()
        for task in list(self._tasks):
            task.cancel()
        for transport in list(self._transports):
            transport.close()
        for protocol in list(self._protocols):
            if getattr(protocol, "transport", None) is not None:
                protocol.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.close()
                # close_clients exists from 3.13; on 3.11 open sessions end with the loop
                await asyncio.wait_for(server.wait_closed(), 0.5)
        await asyncio.sleep(0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------- as a container (the Stalwart slot)

#: where Stalwart answers /healthz/ready (its HTTP listener)
HEALTH_PORT = 8080


def openssl_self_signed(directory: Path, hostname: str = DEFAULT_HOSTNAME) -> TlsFiles:
    """A throwaway self-signed certificate made by the ``openssl`` command (an image without
    the cryptography package)."""
    import subprocess

    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "mailbox.crt", directory / "mailbox.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "2", "-subj", f"/CN={hostname}", "-addext"),
            *(f"subjectAltName=DNS:{hostname}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(cert, key, hostname)


async def _health_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``GET /healthz/ready`` (and ``/healthz/live``) → 200, anything else → 404; plain HTTP."""
    try:
        request = await asyncio.wait_for(reader.readline(), HEADER_TIMEOUT)
        parts = request.decode("latin-1").split()
        ok = (
            len(parts) >= 2
            and parts[0] == "GET"
            and parts[1] in ("/healthz/ready", "/healthz/live")
        )
        status = "200 OK" if ok else "404 Not Found"
        body = b"ok\n" if ok else b"not found\n"
        head = f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


#: the listeners ``inv provision`` would give Stalwart (a JSON list of NetworkListener
#: objects), in the data volume: read at start, as Stalwart binds its listeners only then
LISTENERS_FILE = Path("/var/lib/stalwart/standin-listeners.json")


def listener_trust(path: Path) -> dict[int, tuple[str, ...]] | None:
    """Mail port → PROXY-trusted networks from NetworkListener objects (``bind``,
    ``overrideProxyTrustedNetworks``); None when there is no such file."""
    import json

    try:
        listeners = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    trusted: dict[int, tuple[str, ...]] = {}
    for listener in listeners:
        for bind in listener["bind"]:
            port = int(str(bind).rsplit(":", 1)[1])
            trusted[port] = tuple(listener.get("overrideProxyTrustedNetworks") or {})
    return trusted


def _event(kind: str, **fields: Any) -> str:
    import json

    return json.dumps({"event": kind, **fields}, sort_keys=True)


def serve(
    host: str = "0.0.0.0",
    hostname: str = DEFAULT_HOSTNAME,
    workdir: Path = Path("/tmp/standin"),
    out: Callable[[str], None] = lambda line: print(line, flush=True),
    stop: threading.Event | None = None,
) -> None:
    """The five mail ports on their own numbers plus /healthz/ready on :8080, until ``stop``.

    Every connection and message is printed as one JSON line (``docker logs`` shows what
    the mailbox saw: the TCP peer, and the client carried by PROXY v2)."""
    tls = openssl_self_signed(workdir, hostname)
    trusted = listener_trust(LISTENERS_FILE)
    mailbox = StandinMailbox(
        tls, host, ports={port: port for _, port in MAIL_LISTENERS}, trusted=trusted
    )
    stop = stop or threading.Event()
    with mailbox:
        loop = asyncio.new_event_loop()
        health = loop.run_until_complete(
            asyncio.start_server(_health_reply, host, HEALTH_PORT, reuse_address=True)
        )
        thread = threading.Thread(target=loop.run_forever, name="health", daemon=True)
        thread.start()
        out(_event("ready", ports=sorted(mailbox.ports), health=HEALTH_PORT))
        shown_seen = shown_messages = 0
        try:
            while not stop.is_set():
                shown = (shown_seen, shown_messages)

                def news(s: list[Seen], m: list[Message], shown: tuple[int, int] = shown) -> bool:
                    return (len(s), len(m)) != shown or stop.is_set()

                mailbox.wait_for(news, 1.0)
                for seen in mailbox.seen[shown_seen:]:
                    out(
                        _event(
                            "seen",
                            port=seen.port,
                            peer=seen.peer,
                            src=seen.src,
                            error=seen.error,
                            direct=seen.direct,
                        )
                    )
                    shown_seen += 1
                for msg in mailbox.messages[shown_messages:]:
                    out(
                        _event(
                            "message",
                            port=msg.port,
                            client=msg.client,
                            mail_from=msg.mail_from,
                            rcpt_tos=list(msg.rcpt_tos),
                            size=len(msg.data),
                        )
                    )
                    shown_messages += 1
        finally:
            health.close()
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)


def main() -> None:
    """Entry point of the stand-in image: serve until SIGTERM."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(stop=stop)


if __name__ == "__main__":
    main()
