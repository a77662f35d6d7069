"""The systemd unit of the edge (caddyserver/dist conventions), rendered from a Jinja2 template."""

from __future__ import annotations

from .remote import DEFAULT_ROOT, SERVICE_USER

TEMPLATE = "tailwart-edge.service.j2"


def render_unit(
    root: str = DEFAULT_ROOT,
    admin_socket: str = "/run/tailwart-edge/admin.sock",
    user: str = SERVICE_USER,
) -> str:
    """The unit text; the admin socket must live under /run/<dir>/ (its RuntimeDirectory)."""
    import jinja2

    parts = admin_socket.split("/")
    if len(parts) < 4 or parts[1] != "run":
        raise ValueError(f"admin socket {admin_socket!r} must be /run/<dir>/<name> under systemd")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tailwart.edge", "templates"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.get_template(TEMPLATE).render(
        root=root, user=user, admin_socket=admin_socket, runtime_dir="/".join(parts[2:-1])
    )
