"""config.json reaches an ssh:// mailbox node: a real sshd in a network namespace.

Real parts: OpenSSH (Debian's sshd, keys made for this run), Fabric/paramiko, the upload
code ``inv up`` and ``inv restart`` run before compose on a node reached over ssh://.
The namespace shares the disk, so the remote path is placed under the host's own
directory instead of /var/lib/tailwart.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailwart.edge.hosts import SshOptions
from tailwart.mailbox.errors import MailboxError
from tailwart.mailbox.remote_config import upload_config
from tailwart.settings.example import example_settings
from tailwart.stalwart.datastore import config_json
from tests.support.netns_hosts import Lab, NetnsHost, lab
from tests.support.testkit import explain_on_failure, need_root, need_tool

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def host(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, NetnsHost]]:
    need_root()
    need_tool("sshd")
    need_tool("ip")
    with lab(1) as the_lab:
        the_lab.trust_all()
        explain_on_failure(request.node, the_lab.explain)
        yield the_lab, the_lab.hosts[0]


def test_config_json_is_placed_atomically_and_only_when_it_changed(
    host: tuple[Lab, NetnsHost],
) -> None:
    the_lab, node = host
    remote = Path(node.root) / "var-lib-tailwart" / "config.json"
    text = config_json(example_settings())

    first = upload_config(node.target, text, the_lab.ssh_options(), str(remote))
    assert first.changed
    assert remote.read_text() == text
    assert stat.S_IMODE(remote.stat().st_mode) == 0o644
    assert sorted(p.name for p in remote.parent.iterdir()) == ["config.json"]  # no temp left

    again = upload_config(node.target, text, the_lab.ssh_options(), str(remote))
    assert not again.changed
    changed = text.replace("\n}", ', "x": 1\n}') if text.endswith("\n}\n") else text + " "
    third = upload_config(node.target, changed, the_lab.ssh_options(), str(remote))
    assert third.changed and remote.read_text() == changed


def test_an_unknown_host_key_is_refused_naming_the_host(
    host: tuple[Lab, NetnsHost], tmp_path: Path
) -> None:
    the_lab, node = host
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = SshOptions(
        known_hosts=empty, identity=the_lab.key, ssh_config=the_lab.ssh_config, connect_timeout=5
    )
    remote = Path(node.root) / "refused" / "config.json"
    with pytest.raises(MailboxError) as raised:
        upload_config(node.target, "{}", options, str(remote))
    assert raised.value.exit_code == 1
    assert f"cannot place config.json at {node.target}:{remote}" in str(raised.value)
    assert not remote.exists()
