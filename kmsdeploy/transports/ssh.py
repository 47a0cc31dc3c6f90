"""SSH transport (paramiko): one connection per target per run, reused for every command.

Host variables (Ansible names where they exist; later names in a tuple are fallbacks):

- ``ansible_host`` / ``ansible_ssh_host``, ``ansible_port`` / ``ansible_ssh_port`` (22),
  ``ansible_user`` / ``ansible_ssh_user`` (default: the local user name).
- Password: ``ansible_password`` / ``ansible_ssh_pass`` / ``ansible_ssh_password`` (a Secret).
- Key: ``kmsdeploy_ssh_key`` (a Secret holding the private key text, e.g. ``{file: keys/gw.key}``)
  or ``ansible_ssh_private_key_file`` / ``ansible_private_key_file`` (a path);
  ``kmsdeploy_ssh_key_passphrase`` (Secret) when the key is encrypted;
  ``kmsdeploy_ssh_agent`` (default true): also offer keys from ``SSH_AUTH_SOCK``.
- Host keys: ``kmsdeploy_known_hosts`` (default ``~/.ssh/known_hosts``),
  ``kmsdeploy_ssh_host_key_policy``: ``reject`` (default: an unknown key is refused) or
  ``accept-new`` (trust on first use: the key is appended to the known_hosts file). A
  *changed* key is refused under both policies.
- Privilege: ``ansible_become`` (with ``ansible_become_method`` sudo, the only one
  supported), ``ansible_become_user`` (root), ``ansible_become_password`` /
  ``ansible_become_pass`` (Secret; written to sudo's stdin, never on a command line).
- Timeouts: ``ansible_ssh_timeout`` / ``ansible_timeout`` (connect, seconds),
  ``kmsdeploy_command_timeout`` (per command); defaults from the run's Timeouts.

``run(argv, stdin)`` quotes each argv element with :func:`shlex.quote`; data goes on
stdin. Library errors are mapped here (and only here) to :mod:`kmsdeploy.errors`.
"""
from __future__ import annotations

import errno
import fcntl
import getpass
import io
import os
import secrets
import shlex
import socket
import time
from typing import Any, Mapping, Sequence

import paramiko

from ..errors import (AuthenticationError, HostKeyError, KmsdeployError, SecretError, TimeoutError_,
                      TransportError, UnreachableError)
from ..model import Host, Secret
from .base import Timeouts, Transport

HOST_KEY_POLICIES = ("reject", "accept-new")
#: a command's stdout/stderr beyond this is an error (protects memory from a runaway command)
MAX_OUTPUT = 64 * 1024 * 1024


def _var(vars: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if vars.get(name) is not None:
            return vars[name]
    return default


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _reveal(value: Any, what: str) -> str | None:
    """A secret's text (a plain string from an inventory is accepted too)."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, str):
        return value
    raise SecretError(f"{what} is not resolved (got a {type(value).__name__}); use {{env: NAME}} or {{file: PATH}}")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint (what ``ssh-keygen -lf`` prints)."""
    return key.fingerprint


def load_private_key(text: str, passphrase: str | None, origin: str) -> paramiko.PKey:
    """Parse an OpenSSH/PEM private key from text; SecretError names the origin, never the key."""
    if not text.endswith("\n"):
        text += "\n"  # secrets from files arrive with the trailing newline stripped
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise SecretError(f"SSH key {origin} is encrypted: set kmsdeploy_ssh_key_passphrase") from None
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise SecretError(f"SSH key {origin} is not a readable ed25519, ECDSA or RSA private key")


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys with a message that says what to do."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(
            f"host key of {hostname} is unknown (not in {self.known_hosts}); its {key.get_name()} key has "
            f"fingerprint {fingerprint(key)}. Verify it out of band and add it to that file, or set "
            "kmsdeploy_ssh_host_key_policy: accept-new to trust it on first use", target=hostname)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use: append the new key to known_hosts (under a file lock; parallel-safe)."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        directory = os.path.dirname(self.known_hosts)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with open(self.known_hosts, "a", encoding="ascii") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(line)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        client.get_host_keys().add(hostname, key.get_name(), key)


class SshTransport(Transport):
    """One paramiko connection to one host, reused for every ``run``.

    ``requests`` counts commands run. ``memo`` is per-connection scratch space for
    providers (e.g. the table read during this run), dropped on close.
    """

    kind = "ssh"

    def __init__(self, host: Host, timeouts: Timeouts | None = None, retries: int = 2,
                 base_dir: str = "."):
        v = host.vars
        timeouts = timeouts or Timeouts()
        self.target = host.name
        self.address = str(_var(v, "ansible_host", "ansible_ssh_host", default=host.name))
        self.port = self._number(v, int, ("ansible_port", "ansible_ssh_port"), 22)
        self.user = str(_var(v, "ansible_user", "ansible_ssh_user", default=getpass.getuser()))
        self.connect_timeout = self._number(v, float, ("ansible_ssh_timeout", "ansible_timeout"), timeouts.connect)
        self.command_timeout = self._number(v, float, ("kmsdeploy_command_timeout",), timeouts.operation)
        self.retries = max(0, int(retries))
        known = str(_var(v, "kmsdeploy_known_hosts", default="~/.ssh/known_hosts"))
        known = os.path.expanduser(known)
        self.known_hosts = known if os.path.isabs(known) else os.path.join(base_dir, known)
        self.host_key_policy = str(_var(v, "kmsdeploy_ssh_host_key_policy", default="reject"))
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise TransportError(f"kmsdeploy_ssh_host_key_policy {self.host_key_policy!r} is not one of "
                                 f"{', '.join(HOST_KEY_POLICIES)}", target=self.target, transient=False)
        self._password = _var(v, "ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
        self._key = v.get("kmsdeploy_ssh_key")
        self._key_passphrase = v.get("kmsdeploy_ssh_key_passphrase")
        key_file = _var(v, "ansible_ssh_private_key_file", "ansible_private_key_file")
        if key_file is not None:
            key_file = os.path.expanduser(str(key_file))
            key_file = key_file if os.path.isabs(key_file) else os.path.join(base_dir, key_file)
        self.key_file = key_file
        self.allow_agent = _bool(v.get("kmsdeploy_ssh_agent", True))
        self.become = _bool(v.get("ansible_become", False))
        method = str(v.get("ansible_become_method", "sudo"))
        if self.become and method != "sudo":
            raise TransportError(f"ansible_become_method {method!r} is not supported (only sudo)",
                                 target=self.target, transient=False)
        self.become_user = str(v.get("ansible_become_user", "root"))
        self._become_password = _var(v, "ansible_become_password", "ansible_become_pass")
        self.requests = 0
        self.memo: dict[Any, Any] = {}
        self._client: paramiko.SSHClient | None = None

    def _number(self, vars: Mapping[str, Any], kind: type, names: Sequence[str], default: Any) -> Any:
        """A positive number from host vars; a per-target error (not a ValueError) when it is not."""
        value = _var(vars, *names, default=default)
        try:
            number = kind(value)
            if isinstance(value, bool) or not number > 0:
                raise ValueError
        except (TypeError, ValueError):
            raise TransportError(f"{names[0]} must be a positive number, not {value!r}", target=self.target,
                                 transient=False) from None
        return number

    # -- connection ---------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    def open(self) -> None:
        attempt = 0
        while True:
            try:
                self._connect()
                return
            except TransportError as exc:
                if not exc.transient or attempt >= self.retries:
                    raise
                attempt += 1
                time.sleep(0.3 * 2 ** (attempt - 1))

    def _connect(self) -> None:
        client = paramiko.SSHClient()
        try:
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
            elif self.host_key_policy == "reject":
                raise HostKeyError(f"known_hosts file {self.known_hosts} does not exist, so the host key of "
                                   f"{self.address} cannot be verified; create it or set "
                                   "kmsdeploy_ssh_host_key_policy: accept-new", target=self.target)
            policy = _AcceptNew if self.host_key_policy == "accept-new" else _RejectUnknown
            client.set_missing_host_key_policy(policy(self.known_hosts))
            pkey = None
            if self._key is not None:
                origin = getattr(self._key, "origin", "kmsdeploy_ssh_key")
                pkey = load_private_key(_reveal(self._key, "kmsdeploy_ssh_key"),
                                        _reveal(self._key_passphrase, "kmsdeploy_ssh_key_passphrase"), origin)
            client.connect(
                self.address, port=self.port, username=self.user,
                password=_reveal(self._password, "ansible_password"),
                pkey=pkey, key_filename=self.key_file,
                passphrase=_reveal(self._key_passphrase, "kmsdeploy_ssh_key_passphrase"),
                allow_agent=self.allow_agent, look_for_keys=False,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout, channel_timeout=self.connect_timeout,
            )
        except KmsdeployError:
            client.close()
            raise
        except Exception as exc:  # noqa: BLE001 - every library error is mapped right here
            client.close()
            raise self._map(exc) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        self._client = client

    def _map(self, exc: BaseException) -> TransportError:
        """paramiko/socket exception -> kmsdeploy error (messages never carry secrets)."""
        where = self._where()
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                f"host key of {self.address}:{self.port} CHANGED: known_hosts ({self.known_hosts}) has "
                f"{fingerprint(exc.expected_key)}, the server offered {fingerprint(exc.key)}. This may be an "
                "attack; if the host was rebuilt, remove the old entry with "
                f"ssh-keygen -R {shlex.quote(self._known_name())} -f {shlex.quote(self.known_hosts)}",
                target=self.target)
        if isinstance(exc, paramiko.AuthenticationException):
            return AuthenticationError(f"SSH authentication as {where} failed "
                                       f"({type(exc).__name__}): check the key/password", target=self.target)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return UnreachableError(f"cannot connect to {where}: connection refused (is sshd running?)",
                                    target=self.target)
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return TimeoutError_(f"connecting to {where} timed out after {self.connect_timeout:g}s",
                                 target=self.target)
        if isinstance(exc, ConnectionRefusedError):
            return UnreachableError(f"cannot connect to {where}: connection refused (is sshd running?)",
                                    target=self.target)
        if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            return UnreachableError(f"cannot reach {where}: {os.strerror(exc.errno)}", target=self.target)
        if isinstance(exc, socket.gaierror):
            return UnreachableError(f"cannot resolve {self.address}: {exc.strerror}", target=self.target)
        if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
            return TransportError(f"connection to {where} dropped ({type(exc).__name__})", target=self.target)
        if isinstance(exc, paramiko.SSHException):
            text = str(exc)
            if "banner" in text.lower() or "timeout" in text.lower():
                return TimeoutError_(f"SSH handshake with {where} failed: {text}", target=self.target)
            return TransportError(f"SSH error with {where}: {text}", target=self.target)
        if isinstance(exc, OSError):
            return UnreachableError(f"cannot connect to {where}: {exc.strerror or exc}", target=self.target)
        return TransportError(f"SSH error with {where}: {type(exc).__name__}", target=self.target)

    def _known_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.memo.clear()

    # -- commands -----------------------------------------------------------------------
    def command_line(self, argv: Sequence[str], marker: str | None = None) -> str:
        """The remote command line: each element quoted; wrapped in sudo when becoming."""
        if not argv or any(not isinstance(a, str) or "\x00" in a for a in argv):
            raise ValueError("argv must be a non-empty list of strings without NUL")
        line = " ".join(shlex.quote(a) for a in argv)
        if not self._needs_sudo():
            return line
        # -k: always ask when a password is needed (so the password we send is never read as
        # data); the marker tells us sudo is done and the command's stdin starts (Ansible does
        # the same with its BECOME-SUCCESS marker).
        inner = f"echo {marker} >&2; exec {line}"
        return (f"sudo -H -S -k -p {shlex.quote(marker + '-PROMPT:')} -u {shlex.quote(self.become_user)} "
                f"-- /bin/sh -c {shlex.quote(inner)}")

    def _needs_sudo(self) -> bool:
        return self.become and not (self.user == self.become_user)

    def run(self, argv: Sequence[str], stdin: bytes = b"", *, idempotent: bool = True,
            timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run one command; returns (exit status, stdout, stderr).

        ``idempotent`` commands are retried (bounded) when the connection fails before a
        result arrives; others are not, because the target may have acted already.
        """
        attempt = 0
        while True:
            try:
                return self._run_once(argv, stdin, timeout or self.command_timeout)
            except TransportError as exc:
                if not (idempotent and exc.transient) or attempt >= self.retries:
                    raise
                attempt += 1
                self.close()
                time.sleep(0.3 * 2 ** (attempt - 1))
                self.open()

    def _run_once(self, argv: Sequence[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        if self._client is None:
            raise TransportError(f"SSH transport to {self._where()} is not open", target=self.target,
                                 transient=False)
        marker = "KMSDEPLOY-BECOME-" + secrets.token_hex(8)
        command = self.command_line(argv, marker)
        self.requests += 1
        deadline = time.monotonic() + timeout
        try:
            transport = self._client.get_transport()
            if transport is None or not transport.is_active():
                raise TransportError(f"connection to {self._where()} is closed", target=self.target)
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.settimeout(0.2)
            chan.exec_command(command)
            stdout, stderr = bytearray(), bytearray()
            if self._needs_sudo():
                self._become(chan, marker, stdout, stderr, deadline)
            view = memoryview(stdin)
            while view:
                self._check_deadline(chan, deadline, timeout)
                try:
                    sent = chan.send(view[:32768])
                except socket.timeout:
                    self._drain(chan, stdout, stderr)
                    continue
                if sent <= 0:
                    raise TransportError(f"connection to {self._where()} closed while sending input",
                                         target=self.target)
                view = view[sent:]
            chan.shutdown_write()
            while True:
                self._drain(chan, stdout, stderr)
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                self._check_deadline(chan, deadline, timeout)
                time.sleep(0.005)
            status = chan.recv_exit_status()
            # paramiko reports a channel closed by a dead connection as "exit status ready"
            # with status -1: that is no result at all, not a command that failed
            if status == -1 and self._connection_lost(transport):
                raise TransportError(f"connection to {self._where()} dropped while {argv[0]} was running; "
                                     "its outcome is unknown", target=self.target)
            chan.close()
            return status, bytes(stdout), bytes(stderr)
        except KmsdeployError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped at the boundary
            raise self._map(exc) from None

    @staticmethod
    def _connection_lost(transport, wait: float = 0.5) -> bool:
        """Whether the SSH connection is gone (paramiko closes its channels a moment
        before it marks the transport inactive, so give it that moment)."""
        end = time.monotonic() + wait
        while transport.is_active():
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def _check_deadline(self, chan, deadline: float, timeout: float) -> None:
        if time.monotonic() > deadline:
            chan.close()
            raise TimeoutError_(f"command on {self._where()} timed out after {timeout:g}s", target=self.target)

    def _drain(self, chan, stdout: bytearray, stderr: bytearray) -> None:
        while chan.recv_ready():
            stdout += chan.recv(65536)
        while chan.recv_stderr_ready():
            stderr += chan.recv_stderr(65536)
        if len(stdout) + len(stderr) > MAX_OUTPUT:
            chan.close()
            raise TransportError(f"command on {self._where()} wrote more than {MAX_OUTPUT} bytes",
                                 target=self.target, transient=False)

    def _become(self, chan, marker: str, stdout: bytearray, stderr: bytearray, deadline: float) -> None:
        """Wait for sudo: answer its prompt with the password (on stdin), then for the marker."""
        sent_password = False
        prompt = (marker + "-PROMPT:").encode()
        done = marker.encode()
        while True:
            self._drain(chan, stdout, stderr)
            if prompt in stderr:
                if sent_password:
                    raise AuthenticationError(f"sudo on {self._where()} refused the become password",
                                              target=self.target)
                password = _reveal(self._become_password, "ansible_become_password")
                if password is None:
                    raise AuthenticationError(f"sudo on {self._where()} asks for a password; set "
                                              "ansible_become_password", target=self.target)
                del stderr[: stderr.index(prompt) + len(prompt)]
                chan.sendall(password.encode() + b"\n")
                sent_password = True
                continue
            idx = stderr.find(done + b"\n")
            if idx >= 0:
                del stderr[: idx + len(done) + 1]
                return
            if chan.exit_status_ready() and not chan.recv_stderr_ready():
                text = bytes(stderr).decode("utf-8", "replace").strip()[:300]
                raise AuthenticationError(f"sudo on {self._where()} failed: {text or 'no output'}",
                                          target=self.target)
            if time.monotonic() > deadline:
                chan.close()
                raise TimeoutError_(f"sudo on {self._where()} did not answer", target=self.target)
            time.sleep(0.005)
