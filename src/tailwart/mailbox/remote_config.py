"""config.json on a node reached over ``ssh://``: the engine mounts from its own host.

Docker resolves a bind mount's source on the engine's host, not where ``docker compose``
runs. So before ``up`` or ``restart`` of such a node, tailwart puts the rendered
config.json (the DataStore only, no secret: passwords are environment references) at
``REMOTE_CONFIG_FILE`` there, over SFTP: to a temporary name, then renamed into place, so
Stalwart never reads half a file. Nothing is written when the host already holds the
same bytes.
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..settings.derived import REMOTE_CONFIG_FILE
from .errors import MailboxError

if TYPE_CHECKING:
    from ..edge.hosts import HostTarget, SshOptions

#: the most of the remote file read back to compare (config.json is a few hundred bytes)
MAX_READ = 1 << 16


@dataclass(frozen=True)
class Upload:
    """What ``upload_config`` did: the host, the path, whether the file changed."""

    host: str
    path: str
    changed: bool


def default_ssh_options() -> SshOptions:
    """The operator's known_hosts, SSH config and agent: what docker's own ssh uses."""
    from ..edge.hosts import SshOptions, default_known_hosts

    return SshOptions(known_hosts=default_known_hosts())


def upload_config(
    target: HostTarget, text: str, options: SshOptions, path: str = REMOTE_CONFIG_FILE
) -> Upload:
    """Put ``text`` at ``path`` on ``target`` (mode 0644: Stalwart's user reads it), atomically;
    MailboxError (exit 1) naming the host when SSH or a command fails."""
    import paramiko

    from ..edge.hosts import connect
    from ..edge.remote import LinkStalled, Remote
    from ..errors import TailwartError, UsageError

    where = f"{target}:{path}"
    temporary = f"{path}.tailwart-{secrets.token_hex(6)}"
    q = shlex.quote
    remote: Remote | None = None
    try:
        remote = Remote(connect(target, options), str(target), options.io_timeout)
        held = remote.run(f"head -c {MAX_READ} {q(path)}", check=False, what="read config.json")
        if held.exited == 0 and held.stdout == text:
            return Upload(str(target), path, changed=False)
        remote.run(f"mkdir -p -- {q(posixpath.dirname(path))}", what="create its directory")
        remote.put_text(text, temporary)
        remote.run(
            f"chmod 0644 -- {q(temporary)} && mv -f -- {q(temporary)} {q(path)}",
            what="move config.json into place",
        )
        return Upload(str(target), path, changed=True)
    except UsageError:
        raise  # the SSH config or known_hosts file cannot be read: bad input (exit 2)
    except TailwartError as exc:
        _cleanup(remote, temporary)
        raise MailboxError(
            f"cannot place config.json at {where}: {exc} → the node's engine would mount a "
            "missing file; fix SSH access to the node (the same login docker uses), then rerun"
        ) from None
    except (OSError, EOFError, LinkStalled, paramiko.SSHException) as exc:
        _cleanup(remote, temporary)
        raise MailboxError(
            f"cannot place config.json at {where}: {exc or type(exc).__name__} → check the "
            "node is up and reachable over SSH, then rerun"
        ) from None
    finally:
        if remote is not None:
            remote.close()


def _cleanup(remote: object, temporary: str) -> None:
    """Best effort: drop a half-written temporary file (the link may be gone)."""
    from ..edge.remote import Remote

    if isinstance(remote, Remote):
        # the upload's own error is the one to report
        with contextlib.suppress(Exception):
            remote.run(f"rm -f -- {shlex.quote(temporary)}", check=False, what="clean up")
