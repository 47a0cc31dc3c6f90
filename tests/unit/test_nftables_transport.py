"""SshTransport pieces that need no server: quoting, sudo become flow, error mapping, settings."""
from __future__ import annotations

import shlex
import socket

import paramiko
import pytest

from kmsdeploy.errors import AuthenticationError, HostKeyError, TimeoutError_, TransportError, UnreachableError
from kmsdeploy.model import Host, Secret
from kmsdeploy.providers.nftables import NftSettings
from kmsdeploy.errors import ProviderError
from kmsdeploy.transports.ssh import SshTransport


def transport(**vars):
    return SshTransport(Host("gw01", {"ansible_host": "198.18.0.10", "ansible_user": "ops", **vars}))


def test_command_line_quotes_every_element():
    t = transport()
    line = t.command_line(["nft", "-f", "-", "x'; rm -rf / #", "$(id)"])
    assert shlex.split(line) == ["nft", "-f", "-", "x'; rm -rf / #", "$(id)"]
    with pytest.raises(ValueError):
        t.command_line(["a\x00b"])


def test_become_wraps_in_sudo_with_marker_and_no_password_on_the_command_line():
    t = transport(ansible_become=True, ansible_become_password=Secret("s3cr3t-pw"))
    line = t.command_line(["nft", "-j", "list", "ruleset"], "MARK")
    argv = shlex.split(line)
    assert argv[:2] == ["sudo", "-H"] and "-S" in argv and "-k" in argv
    assert argv[argv.index("-u") + 1] == "root"
    assert "s3cr3t-pw" not in line
    assert shlex.split(argv[-1]) == ["echo", "MARK", ">&2;", "exec", "nft", "-j", "list", "ruleset"]


def test_no_sudo_when_already_the_become_user():
    t = SshTransport(Host("gw", {"ansible_user": "root", "ansible_become": True}))
    assert t.command_line(["id"], "M") == "id"


class FakeChannel:
    """Scripted stand-in for a paramiko channel running sudo."""

    def __init__(self, password_ok=True, prompt=True):
        self.password_ok = password_ok
        self.prompt = prompt
        self.stdin = b""
        self.err = b""
        self.out = b""
        self.status = None
        self.closed = False
        self.marker = None

    def settimeout(self, t):
        pass

    def exec_command(self, command):
        argv = shlex.split(command)
        self.prompt_text = argv[argv.index("-p") + 1].encode()
        self.marker = shlex.split(argv[-1])[1].encode()
        self.err = self.prompt_text if self.prompt else self.marker + b"\n"

    def sendall(self, data):
        self.stdin += data
        if self.prompt and self.stdin.endswith(b"\n") and self.marker + b"\n" not in self.err:
            if self.password_ok:
                self.err += self.marker + b"\n"
            else:
                self.err += b"Sorry, try again.\n" + self.prompt_text

    def send(self, data):
        self.stdin += bytes(data)
        return len(data)

    def shutdown_write(self):
        self.out = b"payload-ok"
        self.status = 0

    def recv_ready(self):
        return bool(self.out)

    def recv(self, n):
        d, self.out = self.out, b""
        return d

    def recv_stderr_ready(self):
        return bool(self.err)

    def recv_stderr(self, n):
        d, self.err = self.err, b""
        return d

    def exit_status_ready(self):
        return self.status is not None

    def recv_exit_status(self):
        return self.status

    def close(self):
        self.closed = True


def wire(t, chan, mocker):
    client = mocker.Mock()
    client.get_transport.return_value.is_active.return_value = True
    client.get_transport.return_value.open_session.return_value = chan
    t._client = client


def test_sudo_password_goes_to_stdin_before_the_payload(mocker):
    t = transport(ansible_become=True, ansible_become_password=Secret("pw"))
    chan = FakeChannel()
    wire(t, chan, mocker)
    assert t.run(["nft", "-f", "-"], b"table inet kmsdeploy\n") == (0, b"payload-ok", b"")
    assert chan.stdin == b"pw\ntable inet kmsdeploy\n"
    assert t.requests == 1


def test_sudo_without_prompt_gets_no_password(mocker):
    t = transport(ansible_become=True, ansible_become_password=Secret("pw"))
    chan = FakeChannel(prompt=False)
    wire(t, chan, mocker)
    t.run(["nft", "-f", "-"], b"data\n")
    assert chan.stdin == b"data\n"  # never the password where the command reads data


def test_wrong_sudo_password_is_an_authentication_error_without_the_password(mocker):
    t = transport(ansible_become=True, ansible_become_password=Secret("wrong-pw"))
    wire(t, FakeChannel(password_ok=False), mocker)
    with pytest.raises(AuthenticationError) as err:
        t.run(["id"], b"", idempotent=False)
    assert "wrong-pw" not in str(err.value)


def test_sudo_prompt_without_password_configured(mocker):
    t = transport(ansible_become=True)
    wire(t, FakeChannel(), mocker)
    with pytest.raises(AuthenticationError, match="ansible_become_password"):
        t.run(["id"], b"", idempotent=False)


@pytest.mark.parametrize("exc, cls", [
    (paramiko.AuthenticationException("no"), AuthenticationError),
    (paramiko.ssh_exception.NoValidConnectionsError({("198.18.0.10", 22): ConnectionRefusedError()}), UnreachableError),
    (socket.timeout(), TimeoutError_),
    (OSError(113, "No route to host"), UnreachableError),
    (EOFError(), TransportError),
    (paramiko.SSHException("Error reading SSH protocol banner"), TimeoutError_),
])
def test_error_mapping(exc, cls):
    mapped = transport(ansible_password=Secret("hunter2"))._map(exc)
    assert type(mapped) is cls
    assert "hunter2" not in str(mapped) and "198.18.0.10" in str(mapped)


def test_changed_host_key_message_says_how_to_fix():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    import io

    def key():
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))

    mapped = transport(ansible_port=2222)._map(paramiko.BadHostKeyException("198.18.0.10", key(), key()))
    assert isinstance(mapped, HostKeyError) and not mapped.transient
    assert "CHANGED" in str(mapped) and "ssh-keygen -R '[198.18.0.10]:2222'" in str(mapped)


def test_settings_validation():
    assert NftSettings.from_host(Host("g", {})) == NftSettings()
    for bad in ({"kmsdeploy_nft_table": "x;y"}, {"kmsdeploy_nft_family": "arp"},
                {"kmsdeploy_nft_persist": "relative/path"}, {"kmsdeploy_nft_persist": "/etc/a\nb"}):
        with pytest.raises(ProviderError):
            NftSettings.from_host(Host("g", bad))
    with pytest.raises(TransportError):
        transport(kmsdeploy_ssh_host_key_policy="auto-add")
    with pytest.raises(TransportError):
        transport(ansible_become=True, ansible_become_method="su")


class DroppedChannel(FakeChannel):
    """A channel paramiko closed because the connection died: 'exit status ready', status -1."""

    def exec_command(self, command):
        pass  # no sudo here

    def shutdown_write(self):
        self.closed = True
        self.status = -1


def test_connection_dropped_while_running_is_outcome_unknown_not_exit_minus_1(mocker):
    t = transport()
    wire(t, DroppedChannel(prompt=False), mocker)
    t._client.get_transport.return_value.is_active.side_effect = [True, False]
    with pytest.raises(TransportError, match="outcome is unknown") as err:
        t.run(["nft", "-f", "-"], b"table inet kmsdeploy\n", idempotent=False)
    assert err.value.transient


def test_command_killed_by_a_signal_on_a_live_connection_is_status_minus_1(mocker):
    t = transport()
    wire(t, DroppedChannel(prompt=False), mocker)  # is_active stays True: the server sent exit-signal
    assert t.run(["sleep", "9"], b"", idempotent=False)[0] == -1


@pytest.mark.parametrize("vars", [{"ansible_port": "ssh"}, {"kmsdeploy_command_timeout": "soon"},
                                  {"ansible_ssh_timeout": 0}, {"ansible_port": True}])
def test_bad_numbers_in_host_vars_are_per_target_errors(vars):
    with pytest.raises(TransportError) as err:
        transport(**vars)
    assert err.value.target == "gw01" and not err.value.transient and "positive number" in str(err.value)
