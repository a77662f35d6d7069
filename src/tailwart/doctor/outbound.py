"""Doctor group ``outbound``: the path outgoing mail takes.

With ``STALWART_SMARTHOST``: it answers on its port (SMTP 220, and STARTTLS
offered, or implicit TLS). Without: a warning that outbound :25 is usually
blocked on a VPS, and a probe of ``OUTBOUND_PROBE`` (host:port) from here.
"""

from __future__ import annotations

from ..findings import Finding
from .registry import Check, DoctorContext, error, ok, warning
from .wire import WireError, connect, read_smtp_reply, short, tls_wrap

GROUP = "outbound"


def _smtp_session(
    host: str, port: int, timeout: float, implicit: bool, helo: str, sni: str = ""
) -> tuple[str, list[str]]:
    """(greeting, EHLO keywords) from an SMTP server; QUIT afterwards."""
    sock = connect(host, port, timeout)
    try:
        if implicit:
            sock = tls_wrap(sock, sni or host)
        greeting = read_smtp_reply(sock)
        if not greeting[0].startswith("220"):
            return greeting[0], []
        sock.sendall(f"EHLO {helo}\r\n".encode())
        reply = read_smtp_reply(sock)
        sock.sendall(b"QUIT\r\n")
        keywords = [line[4:].split(" ")[0].upper() for line in reply if line.startswith("250")]
        return greeting[0], keywords
    except TimeoutError:
        raise WireError(f"{host}:{port} stopped answering within {timeout:g}s") from None
    except OSError as exc:
        raise WireError(f"{host}:{port}: {exc}") from None
    finally:
        sock.close()


def smarthost(ctx: DoctorContext) -> Finding:
    s = ctx.settings
    target = s.hostport("STALWART_SMARTHOST")
    if target is None:
        return warning(
            "no STALWART_SMARTHOST: Stalwart delivers directly, and outbound :25 is "
            "usually blocked on a VPS",
            "set STALWART_SMARTHOST to a relay (see outbound.port25 for a probe from here)",
        )
    implicit = s["STALWART_SMARTHOST_TLS"] == "implicit"
    where = f"smarthost {target.host}:{target.port}"
    try:
        greeting, keywords = _smtp_session(
            ctx.address(target.host),
            target.port,
            ctx.timeout,
            implicit,
            s["MAIL_HOSTNAME"],
            sni=target.host,
        )
    except WireError as exc:
        return error(
            f"{where}: {exc}",
            "check STALWART_SMARTHOST (host, port, TLS mode) and "
            "that the mailbox host may reach it",
        )
    if not greeting.startswith("220"):
        return error(
            f"{where}: expected a 220 greeting, got {short(greeting)!r}",
            "check the relay's port and TLS mode (STALWART_SMARTHOST_TLS)",
        )
    if not implicit and "STARTTLS" not in keywords:
        return error(
            f"{where}: answers but does not offer STARTTLS",
            "use the relay's submission port with STARTTLS, or implicit TLS on 465",
        )
    how = "implicit TLS" if implicit else "STARTTLS offered"
    return ok(f"{where}: {short(greeting, 40)} ({how})")


def port25(ctx: DoctorContext) -> Finding:
    target = ctx.settings.hostport("OUTBOUND_PROBE")
    if target is None:
        return warning(
            "outbound :25 not tested: OUTBOUND_PROBE is not set",
            "set OUTBOUND_PROBE=host:25 of an MX you may probe, or set a smarthost",
        )
    where = f"{target.host}:{target.port}"
    try:
        greeting, _ = _smtp_session(
            ctx.address(target.host),
            target.port,
            ctx.timeout,
            False,
            ctx.settings["MAIL_HOSTNAME"],
        )
    except WireError as exc:
        return error(
            f"outbound to {where} from this machine: {exc}",
            "outbound :25 looks blocked: set STALWART_SMARTHOST to a relay",
        )
    if not greeting.startswith("220"):
        return error(
            f"{where}: expected a 220 greeting, got {short(greeting)!r}",
            "choose an OUTBOUND_PROBE that is an SMTP server",
        )
    return ok(f"outbound to {where} from this machine: {short(greeting, 40)}")


def checks(ctx: DoctorContext) -> list[Check]:
    out = [Check("outbound.smarthost", GROUP, "smarthost", smarthost)]
    if not ctx.settings["STALWART_SMARTHOST"]:
        out.append(Check("outbound.port25", GROUP, "outbound :25 probe", port25))
    return out
