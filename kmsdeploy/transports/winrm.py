"""WinRM transport (pywinrm), one shell per target per run.

Ansible pays a new WinRM shell, a new ``powershell.exe`` and a C# compile per task per
host; we open ONE shell (``codepage=65001``) on :meth:`WinrmTransport.open`, run every
command of the run in it and delete it on :meth:`close`. Commands take their input over
stdin (``rsp:Send``), never on the command line (8,191-character limit), and stdin is
passed as BYTES (pywinrm encodes a ``str`` as cp437). See DESIGN.md "Lab contract" and
``reference/winrm-protocol.md``.

Host variables (Ansible ``ansible_winrm_*`` names where they map):

==========================================  ===========================================
``ansible_host`` / ``ansible_port``         address; port 5986 for https, 5985 for http
``ansible_user`` / ``ansible_password``     account; the password is a ``Secret``
``ansible_winrm_scheme``                    ``https`` (default) or ``http``
``ansible_winrm_transport``                 ``ntlm`` (default), ``basic``, ``kerberos``,
                                            ``credssp``, ``certificate`` (only ntlm and
                                            basic are exercised by our tests)
``ansible_winrm_server_cert_validation``    ``validate`` (default) or ``ignore`` (warns)
``ansible_winrm_ca_trust_path``             CA bundle (PEM) to verify the host with
``ansible_winrm_message_encryption``        ``auto`` (default), ``always``, ``never``
``ansible_winrm_connection_timeout``        seconds to connect (default: run's connect timeout)
``ansible_winrm_operation_timeout_sec``     WS-Man OperationTimeout (default 20)
``ansible_winrm_read_timeout_sec``          HTTP read timeout (default 30; > operation)
``ansible_winrm_cert_pem`` / ``..._key_pem``  client certificate auth
``ansible_winrm_proxy``                     HTTP proxy (default: none, env ignored)
``kmsdeploy_winrm_allow_http``              must be true to use plain HTTP at all
``kmsdeploy_winrm_allow_unencrypted``       must ALSO be true for HTTP without message
                                            encryption (Basic over HTTP, encryption never)
==========================================  ===========================================

Retries: bounded, with exponential backoff, on transient faults (connection refused or
reset, HTTP 5xx / WS-Man InternalError, read timeouts) — but a Command or stdin Send
whose request may have reached the host is never re-sent unless the caller says the
command is ``idempotent`` (reads are; applies decide). Library errors become
:mod:`kmsdeploy.errors` types with a per-host message that never holds the password.
"""
from __future__ import annotations

import logging
import os
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import requests
import requests.adapters
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from ..errors import AuthenticationError, TimeoutError_, TransportError, UnreachableError
from ..model import Host, Secret
from .base import Timeouts, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")

#: raw stdin bytes per rsp:Send: base64 (x4/3) plus the envelope stays under the
#: 153,600-byte MaxEnvelopeSize of older Windows (newer ones accept 500 KiB)
STDIN_CHUNK = 96 * 1024
SHELL_NOT_FOUND = 2150858843
AUTH_KINDS = ("ntlm", "basic", "kerberos", "credssp", "certificate")


@dataclass(frozen=True)
class CommandResult:
    """What one command produced: raw stdout/stderr bytes and its exit code."""

    stdout: bytes
    stderr: bytes
    exit_code: int


@dataclass(frozen=True)
class WinrmSettings:
    """Validated connection settings of one Windows target (from its host variables)."""

    name: str
    endpoint: str
    scheme: str
    auth: str
    user: str | None
    password: Secret | None
    server_cert_validation: str
    ca_trust_path: str | None
    message_encryption: str
    connection_timeout: float
    operation_timeout: int
    read_timeout: int
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    proxy: str | None = None

    @property
    def encrypted(self) -> bool:
        """Whether messages are protected (TLS, or message encryption over HTTP)."""
        return self.scheme == "https" or (self.message_encryption != "never" and self.auth in ("ntlm", "kerberos", "credssp"))


_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f", ""}


def _bool(value: Any, name: str, problems: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        problems.append(f"{name} must be a boolean, not {value!r}")
    return False


def _number(value: Any, name: str, problems: list[str], default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{name} must be a number of seconds, not {value!r}")
        return default
    if number <= 0:
        problems.append(f"{name} must be positive")
        return default
    return number


def settings_from_vars(name: str, host_vars: Mapping[str, Any], *, base_dir: str = ".",
                       timeouts: Timeouts | None = None) -> WinrmSettings:
    """Validate the WinRM host variables of ``name``; raise one non-transient
    :class:`TransportError` listing every problem (before any connection is made)."""
    v = host_vars
    timeouts = timeouts or Timeouts()
    problems: list[str] = []
    scheme = str(v.get("ansible_winrm_scheme", "https")).lower()
    if scheme not in ("http", "https"):
        problems.append(f"ansible_winrm_scheme must be 'https' or 'http', not {scheme!r}")
    auth = v.get("ansible_winrm_transport", "ntlm")
    if isinstance(auth, (list, tuple)):
        auth = auth[0] if auth else "ntlm"
    auth = str(auth).lower()
    if auth not in AUTH_KINDS:
        problems.append(f"ansible_winrm_transport must be one of {', '.join(AUTH_KINDS)}, not {auth!r}")
    encryption = str(v.get("ansible_winrm_message_encryption", "auto")).lower()
    if encryption not in ("auto", "always", "never"):
        problems.append(f"ansible_winrm_message_encryption must be auto, always or never, not {encryption!r}")
    validation = str(v.get("ansible_winrm_server_cert_validation", "validate")).lower()
    if validation not in ("validate", "ignore"):
        problems.append(f"ansible_winrm_server_cert_validation must be 'validate' or 'ignore', not {validation!r}")
    if encryption == "always" and auth in ("basic", "certificate"):
        problems.append(f"ansible_winrm_message_encryption=always is impossible with {auth} authentication")
    if scheme == "http":
        if not _bool(v.get("kmsdeploy_winrm_allow_http", False), "kmsdeploy_winrm_allow_http", problems):
            problems.append("plain HTTP (ansible_winrm_scheme=http) is refused: use https, or set "
                            "kmsdeploy_winrm_allow_http: true to opt in (messages are then NTLM-encrypted)")
        elif auth == "certificate":
            problems.append("certificate authentication needs https")
        elif auth == "basic" or encryption == "never":
            if not _bool(v.get("kmsdeploy_winrm_allow_unencrypted", False), "kmsdeploy_winrm_allow_unencrypted", problems):
                what = "Basic authentication" if auth == "basic" else "message_encryption=never"
                problems.append(f"{what} over plain HTTP sends every message (and with Basic, the password) "
                                "unencrypted: set kmsdeploy_winrm_allow_unencrypted: true as well to allow it")
    port = v.get("ansible_port")
    if port is None:
        port = 5986 if scheme == "https" else 5985
    try:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"ansible_port must be a TCP port, not {port!r}")
        port = 0
    address = str(v.get("ansible_host", name))
    user = v.get("ansible_user")
    password = v.get("ansible_password")
    if password is not None and not isinstance(password, Secret):
        password = Secret(str(password), "ansible_password")
    if auth in ("ntlm", "basic", "credssp"):
        if not user:
            problems.append(f"ansible_user is required for {auth} authentication")
        if password is None:
            problems.append(f"ansible_password is required for {auth} authentication")

    def path_var(key: str) -> str | None:
        value = v.get(key)
        if value in (None, ""):
            return None
        path = os.path.join(base_dir, os.path.expanduser(str(value)))
        if not os.path.isfile(path):
            problems.append(f"{key}: file not found: {path}")
        return path

    ca = path_var("ansible_winrm_ca_trust_path")
    cert_pem, cert_key = path_var("ansible_winrm_cert_pem"), path_var("ansible_winrm_cert_key_pem")
    if auth == "certificate" and not (cert_pem and cert_key):
        problems.append("certificate authentication needs ansible_winrm_cert_pem and ansible_winrm_cert_key_pem")
    connect = _number(v.get("ansible_winrm_connection_timeout"), "ansible_winrm_connection_timeout",
                      problems, timeouts.connect)
    operation = int(_number(v.get("ansible_winrm_operation_timeout_sec"), "ansible_winrm_operation_timeout_sec",
                            problems, 20))
    read = int(_number(v.get("ansible_winrm_read_timeout_sec"), "ansible_winrm_read_timeout_sec", problems, 30))
    if read <= operation:
        problems.append("ansible_winrm_read_timeout_sec must exceed ansible_winrm_operation_timeout_sec "
                        f"({read} <= {operation})")
    if problems:
        raise TransportError(f"{name}: invalid WinRM settings:\n  " + "\n  ".join(problems),
                             target=name, transient=False)
    host_part = f"[{address}]" if ":" in address else address
    if validation == "ignore" and scheme == "https":
        log.warning("%s: TLS certificate validation is DISABLED (ansible_winrm_server_cert_validation=ignore)", name)
    return WinrmSettings(
        name=name, endpoint=f"{scheme}://{host_part}:{port}/wsman", scheme=scheme, auth=auth,
        user=str(user) if user is not None else None, password=password,
        server_cert_validation=validation, ca_trust_path=ca, message_encryption=encryption,
        connection_timeout=connect, operation_timeout=operation, read_timeout=read,
        cert_pem=cert_pem, cert_key_pem=cert_key, proxy=v.get("ansible_winrm_proxy") or None,
    )


# ------------------------------------------------------------------- error mapping

class _Uncertain(Exception):
    """A Command/Send was lost in flight: the command may have run on the host."""

    def __init__(self, error: TransportError):
        super().__init__(str(error))
        self.error = error


class _ShellLost(TransportError):
    """The host no longer knows our shell (fault 2150858843); the request was refused."""

    transient = False


def _chain(exc: BaseException):
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        more = [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
        todo.extend(m for m in more if isinstance(m, BaseException))


def classify(exc: BaseException, settings: WinrmSettings, what: str) -> tuple[TransportError, bool | None]:
    """Map a library exception to ``(error, delivered)``.

    ``delivered`` is False when the host certainly did not act on the request (refused
    connection, a fault reply, 401), None when it may have (connection dropped after
    sending, read timeout). Messages name the host and endpoint, never the password.
    """
    where = f"{settings.name} ({settings.endpoint})"
    if isinstance(exc, (InvalidCredentialsError, PermissionError)):  # PermissionError: requests_ntlm, no challenge
        return AuthenticationError(
            f"{where}: authentication failed: the server rejected the {settings.auth} credentials of user "
            f"{settings.user!r} (HTTP 401)", target=settings.name), False
    if isinstance(exc, WSManFaultError):
        if exc.wsman_fault_code == SHELL_NOT_FOUND:
            return _ShellLost(f"{where}: {what}: the WinRM shell no longer exists on the host",
                              target=settings.name), False
        transient = (exc.fault_subcode or "").endswith("InternalError") or exc.code in (502, 503, 504)
        code = f" {exc.wsman_fault_code}" if exc.wsman_fault_code is not None else ""
        return TransportError(f"{where}: {what}: WS-Management fault{code} (HTTP {exc.code}, "
                              f"{exc.fault_subcode or exc.fault_code}): {exc.reason}",
                              target=settings.name, transient=transient), False
    if isinstance(exc, WinRMTransportError):
        transient = exc.code >= 500 or exc.code == 400  # 400: sealed-session desync after a reconnect
        return TransportError(f"{where}: {what}: HTTP {exc.code} from the WinRM service",
                              target=settings.name, transient=transient), False
    if isinstance(exc, WinRMOperationTimeoutError):
        return TimeoutError_(f"{where}: {what}: WS-Management operation timed out "
                             f"(OperationTimeout {settings.operation_timeout}s)", target=settings.name), False
    if isinstance(exc, requests.exceptions.SSLError):
        text = " ".join(str(e) for e in _chain(exc))
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            why = next((w for w in ("self-signed certificate in certificate chain", "unable to get local issuer",
                                    "Hostname mismatch", "IP address mismatch", "certificate has expired",
                                    "self-signed certificate") if w in text), "untrusted certificate")
            return TransportError(
                f"{where}: TLS certificate verification failed ({why}); set ansible_winrm_ca_trust_path to the "
                "CA that issued the host's certificate", target=settings.name, transient=False), False
        return TransportError(f"{where}: TLS handshake failed: {type(exc).__name__}",
                              target=settings.name, transient=True), False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TimeoutError_(f"{where}: {what}: no connection within {settings.connection_timeout:g}s",
                             target=settings.name), False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TimeoutError_(f"{where}: {what}: no reply within {settings.read_timeout}s (read timeout)",
                             target=settings.name), None
    if isinstance(exc, requests.exceptions.ConnectionError):
        for e in _chain(exc):
            if isinstance(e, (ConnectionRefusedError, socket.gaierror)) or type(e).__name__ in (
                    "NewConnectionError", "NameResolutionError"):
                reason = "connection refused" if isinstance(e, ConnectionRefusedError) or \
                    "refused" in str(e).lower() else "cannot connect"
                return UnreachableError(f"{where}: unreachable: {reason}", target=settings.name), False
        return TransportError(f"{where}: {what}: connection dropped by the host before it replied",
                              target=settings.name, transient=True), None
    if isinstance(exc, (ssl.SSLError, OSError)):
        return TransportError(f"{where}: {what}: {type(exc).__name__}", target=settings.name,
                              transient=True), None
    if isinstance(exc, WinRMError):
        return TransportError(f"{where}: {what}: {exc}", target=settings.name, transient=False), False
    if isinstance(exc, (StopIteration, AssertionError, ET.ParseError, KeyError, ValueError)):
        return TransportError(f"{where}: {what}: unexpected reply from the WinRM service ({type(exc).__name__})",
                              target=settings.name, transient=False), False
    return TransportError(f"{where}: {what}: {type(exc).__name__}", target=settings.name, transient=False), None


class _CountingAdapter(requests.adapters.HTTPAdapter):
    """Counts every HTTP request (NTLM handshake legs included: requests_ntlm re-sends
    through ``response.connection``, i.e. this adapter) and splits pywinrm's single
    timeout into (connect, read)."""

    def __init__(self, owner: "WinrmTransport", connect_timeout: float):
        super().__init__(max_retries=0)
        self._owner = owner
        self._connect = connect_timeout

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self._owner.requests += 1
        if isinstance(timeout, (int, float)):
            timeout = (self._connect, timeout)
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


class WinrmTransport(Transport):
    """One WinRM shell per target for the whole run (see the module docstring)."""

    kind = "winrm"

    def __init__(self, host: Host, timeouts: Timeouts | None = None, *, retries: int = 2,
                 base_dir: str = ".", backoff: float = 0.25, sleep: Callable[[float], None] = time.sleep):
        self.host = host
        self.timeouts = timeouts or Timeouts()
        self.retries = retries
        self.base_dir = base_dir
        self.backoff = backoff
        self._sleep = sleep
        self.requests = 0
        self.settings: WinrmSettings | None = None
        self.shell_id: str | None = None
        self._protocol: Protocol | None = None

    # -- lifecycle ---------------------------------------------------------
    def open(self) -> None:
        """Validate the settings, authenticate and open the run's shell (codepage 65001)."""
        s = self.settings = settings_from_vars(self.host.name, self.host.vars, base_dir=self.base_dir,
                                               timeouts=self.timeouts)
        try:
            self._protocol = Protocol(
                s.endpoint, transport=s.auth, username=s.user,
                password=s.password.reveal() if s.password is not None else None,
                ca_trust_path=s.ca_trust_path, cert_pem=s.cert_pem, cert_key_pem=s.cert_key_pem,
                server_cert_validation=s.server_cert_validation, read_timeout_sec=s.read_timeout,
                operation_timeout_sec=s.operation_timeout, message_encryption=s.message_encryption,
                proxy=s.proxy,
            )
        except WinRMError as e:
            raise TransportError(f"{s.name}: cannot set up WinRM: {e}", target=s.name, transient=False) from None
        self._instrument()
        self.shell_id = self._request("Create shell", lambda: self._protocol.open_shell(codepage=65001),
                                      resend_safe=True)

    def close(self) -> None:
        """Delete the shell (best effort) and close the HTTP session."""
        if self._protocol is None:
            return
        try:
            if self.shell_id:
                shell, self.shell_id = self.shell_id, None
                self._request("Delete shell", lambda: self._protocol.close_shell(shell, close_session=False),
                              resend_safe=True, retries=0)
        except (TransportError, _Uncertain) as e:
            log.info("%s: could not delete the WinRM shell: %s", self.host.name, e)
        finally:
            self._protocol.transport.close_session()
            self._protocol = None

    def _instrument(self) -> None:
        transport = self._protocol.transport
        original = transport._send_message_request
        connect = self.settings.connection_timeout

        def counted(session: requests.Session, prepared: requests.PreparedRequest):
            # mount once per requests.Session (pywinrm builds a new one after close_session)
            if not getattr(session, "_kmsdeploy_counted", False):
                adapter = _CountingAdapter(self, connect)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session._kmsdeploy_counted = True
            return original(session, prepared)

        transport._send_message_request = counted

    def _reset_session(self) -> None:
        # NTLM authenticates (and seals for) one TCP connection: after a drop, start over
        # with a fresh session (new handshake, new sealing keys); the shell lives on.
        if self._protocol is not None:
            self._protocol.transport.close_session()
            self._protocol.transport.encryption = None

    # -- requests with retries ---------------------------------------------------
    def _request(self, what: str, fn: Callable[[], T], *, resend_safe: bool, retries: int | None = None) -> T:
        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return fn()
            except WinRMOperationTimeoutError:
                if what == "Receive":
                    raise
                exc = WinRMOperationTimeoutError()
                error, delivered = classify(exc, self.settings, what)
            except Exception as e:  # noqa: BLE001 - every library error is mapped here
                exc = e
                error, delivered = classify(exc, self.settings, what)
            if delivered is None or isinstance(error, UnreachableError) or (
                    isinstance(exc, WinRMTransportError) and exc.code == 400):
                self._reset_session()
            if error.transient and attempt < retries and (delivered is False or resend_safe):
                attempt += 1
                delay = self.backoff * (2 ** (attempt - 1))
                log.info("%s: %s failed (%s); retry %d/%d in %.2fs", self.host.name, what, error, attempt,
                         retries, delay)
                self._sleep(delay)
                continue
            if delivered is None and not resend_safe:
                raise _Uncertain(error)
            raise error

    # -- commands ---------------------------------------------------------------
    def run(self, command_line: str, stdin: bytes = b"", *, idempotent: bool = False,
            timeout: float | None = None) -> CommandResult:
        """Run one command in the run's shell, feeding ``stdin`` (bytes) and collecting its output.

        ``idempotent=True`` lets a command whose Command/Send may have reached the host be
        re-run from the start; otherwise that case raises a non-transient TransportError
        saying the command may have run. ``timeout`` bounds the wait for the command to
        finish (default: the run's operation timeout).
        """
        if self._protocol is None or not self.shell_id:
            raise TransportError(f"{self.host.name}: WinRM transport is not open", target=self.host.name,
                                 transient=False)
        if isinstance(stdin, str):
            raise TypeError("stdin must be bytes (pywinrm would encode a str as cp437)")
        attempt = 0
        while True:
            try:
                return self._run_once(command_line, stdin, timeout or self.timeouts.operation)
            except _Uncertain as u:
                if idempotent and attempt < self.retries:
                    attempt += 1
                    self._sleep(self.backoff * (2 ** (attempt - 1)))
                    continue
                raise TransportError(
                    f"{u.error} — the command may have run on the host; it was not re-sent "
                    "(not marked idempotent)", target=self.host.name, transient=False) from None

    def _run_once(self, command_line: str, stdin: bytes, timeout: float) -> CommandResult:
        p = self._protocol
        try:
            command_id = self._request("Command", lambda: p.run_command(self.shell_id, command_line),
                                       resend_safe=False)
        except _ShellLost:
            # the host lost our shell (service restart): open a new one; the Command was refused
            self.shell_id = self._request("Create shell", lambda: p.open_shell(codepage=65001), resend_safe=True)
            command_id = self._request("Command", lambda: p.run_command(self.shell_id, command_line),
                                       resend_safe=False)
        try:
            chunks = [stdin[i:i + STDIN_CHUNK] for i in range(0, len(stdin), STDIN_CHUNK)]
            for index, chunk in enumerate(chunks):
                last = index == len(chunks) - 1
                self._request("Send", lambda c=chunk, e=last: p.send_command_input(self.shell_id, command_id, c, end=e),
                              resend_safe=False)
            return self._receive(command_id, timeout)
        finally:
            try:
                self._request("Signal", lambda: p.cleanup_command(self.shell_id, command_id), resend_safe=True,
                              retries=1)
            except (TransportError, _Uncertain) as e:
                log.info("%s: could not clean up command %s: %s", self.host.name, command_id, e)

    def _receive(self, command_id: str, timeout: float) -> CommandResult:
        p = self._protocol
        deadline = time.monotonic() + timeout
        stdout, stderr = bytearray(), bytearray()
        while True:
            try:
                out, err, code, done = self._request(
                    "Receive", lambda: p.get_command_output_raw(self.shell_id, command_id), resend_safe=True)
            except WinRMOperationTimeoutError:
                # the long poll ended with nothing to report: ask again until our deadline
                if time.monotonic() >= deadline:
                    raise TimeoutError_(f"{self.settings.name} ({self.settings.endpoint}): command did not finish "
                                        f"within {timeout:g}s", target=self.host.name) from None
                continue
            stdout += out
            stderr += err
            if done:
                return CommandResult(bytes(stdout), bytes(stderr), code)
            if time.monotonic() >= deadline:
                raise TimeoutError_(f"{self.settings.name} ({self.settings.endpoint}): command did not finish "
                                    f"within {timeout:g}s", target=self.host.name)
