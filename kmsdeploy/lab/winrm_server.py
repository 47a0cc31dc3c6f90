"""The lab's WinRM endpoint: real WS-Man over HTTP(S) for many simulated Windows hosts.

Unmodified pywinrm talks to it (reference ``winrm-protocol.md``). One
:class:`WinrmLabServer` serves many hosts in one process: each host listens on its own
loopback address (``127.0.0.0/8``) at the server's port, with its own shells, request
counters and faults. Behind the protocol sits a *handler*::

    handler(host: str, command_line: str, stdin: bytes) -> CommandResult

called in the request thread once the command's stdin is complete (``Send`` with
``End="true"``) or at the first ``Receive`` when no stdin was sent. The Windows model
(``kmsdeploy.lab.model``) is such a handler; :class:`EchoHandler` is a tiny one for tests.

What the endpoint enforces like Windows does: authentication (Basic, or NTLM through
pyspnego with MS-WSMV message encryption), ``AllowUnencrypted=false`` on plain HTTP
(``encryption=True``, the default), the 8,191-character cmd.exe command-line limit
(``The command line is too long.`` on stderr, exit code 1), unknown shells (fault
2150858843), long-polled Receives that end in ``w:TimedOut`` (2150858793), output in
chunks of at most 64 KiB per reply, and requests larger than ``MaxEnvelopeSizekb``.
"""
from __future__ import annotations

import collections
import logging
import selectors
import shlex
import socket
import socketserver
import ssl
import threading
import time
import base64
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Mapping

from ..transports.winrm import CommandResult
from . import wsman
from .faults import DROP_AFTER, DROP_BEFORE, FaultInjector
from .ntlm_auth import AuthFailed, NtlmAcceptor, check_basic, register_users, split_authorization
from .tls import LabCA, ServerCert

__all__ = ["CommandResult", "EchoHandler", "LabHostConfig", "WinrmLabServer", "CMD_LINE_LIMIT"]

log = logging.getLogger(__name__)

#: cmd.exe's maximum command-line length (reference "Shape of one run_ps() call")
CMD_LINE_LIMIT = 8191
CMD_LINE_TOO_LONG = b"The command line is too long.\r\n"

Handler = Callable[[str, str, bytes], CommandResult]


@dataclass(frozen=True)
class LabHostConfig:
    """One simulated Windows host: its inventory name and its loopback address."""

    name: str
    address: str  # e.g. 127.0.1.5; the whole 127.0.0.0/8 answers on Linux without setup
    dns_names: tuple[str, ...] = ()  # extra names for the HTTPS certificate


# ---------------------------------------------------------------------------- shells

@dataclass
class _Command:
    id: str
    command_line: str
    stdin: bytearray = field(default_factory=bytearray)
    stdin_started: bool = False
    stdin_done: bool = False
    result: CommandResult | None = None
    out: bytes = b""
    err: bytes = b""
    finished: bool = False  # Done already reported
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Shell:
    id: str
    codepage: int
    owner: str
    skip_cmd_shell: bool = False
    commands: dict[str, _Command] = field(default_factory=dict)


class EchoHandler:
    """A minimal handler for protocol tests (not a Windows model).

    - non-empty stdin: stdout is the stdin, exit 0
    - ``echo TEXT``: ``TEXT\\r\\n``; ``exit N``: exit code N; ``fail TEXT``: TEXT on stderr, exit 1
    - ``repeat N``: N bytes of output (a fixed pattern), exit 0
    - ``powershell -EncodedCommand B64`` (also ``-enc``/``-e``): the decoded script as UTF-8
    """

    def __call__(self, host: str, command_line: str, stdin: bytes) -> CommandResult:
        if stdin:
            return CommandResult(bytes(stdin), b"", 0)
        try:
            words = shlex.split(command_line, posix=False)
        except ValueError:
            words = command_line.split()
        verb = words[0].lower() if words else ""
        rest = command_line[len(words[0]):].lstrip() if words else ""
        if verb == "echo":
            return CommandResult(rest.encode() + b"\r\n", b"", 0)
        if verb == "exit" and rest.strip().lstrip("-").isdigit():
            return CommandResult(b"", b"", int(rest))
        if verb == "fail":
            return CommandResult(b"", rest.encode() + b"\r\n", 1)
        if verb == "repeat" and rest.strip().isdigit():
            n = int(rest)
            pattern = b"0123456789abcdef" * 4096
            return CommandResult((pattern * (n // len(pattern) + 1))[:n], b"", 0)
        if verb in ("powershell", "powershell.exe"):
            for i, w in enumerate(words[1:-1], 1):
                if w.lower() in ("-encodedcommand", "-enc", "-e", "/encodedcommand"):
                    script = base64.b64decode(words[i + 1]).decode("utf-16-le")
                    return CommandResult(script.encode("utf-8"), b"", 0)
        return CommandResult(b"", f"'{words[0] if words else ''}' is not recognized as an internal or external "
                             "command,\r\noperable program or batch file.\r\n".encode(), 1)


# ---------------------------------------------------------------------------- HTTP

class _Dropped(Exception):
    """Close the connection without a reply (fault injection)."""


class _WinrmRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: NTLM authenticates the connection
    disable_nagle_algorithm = True  # ~40 ms per request otherwise (reference "Measured")
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections close after this (http.sys default: 120 s)

    # per-connection authentication state
    ntlm: NtlmAcceptor | None = None
    user: str | None = None

    def setup(self) -> None:
        super().setup()
        lab: WinrmLabServer = self.server.lab
        lab._track(self.request, add=True)
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                log.debug("TLS handshake with %s failed: %s", self.client_address, e)
                self.close_connection = True
                self._tls_failed = True

    def handle(self) -> None:
        if getattr(self, "_tls_failed", False):
            return
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, TimeoutError, OSError):
            pass  # the client went away or the idle timeout struck

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.lab._track(self.request, add=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.server.host_config.name, format % args)

    # -- replies -------------------------------------------------------------
    def _reply(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
               content_type: str | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if content_type and body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # headers and body in one write (one TLS record / TCP segment burst)
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def _unauthorized(self, scheme_header: str | None) -> None:
        headers = {"WWW-Authenticate": scheme_header} if scheme_header else {}
        self._reply(401, b"", headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802
        self._reply(405, b"")

    def do_POST(self) -> None:  # noqa: N802
        lab: WinrmLabServer = self.server.lab
        host = self.server.host_config.name
        length = int(self.headers.get("Content-Length") or 0)
        if length > lab.max_request_bytes * 2:
            lab._count(host, "too_large")
            self.close_connection = True
            self._reply(413, b"")
            return
        body = self.rfile.read(length) if length else b""
        delay = lab.faults.latency(host)
        if delay:
            time.sleep(delay)
        if self.path.split("?")[0].lower() != "/wsman":
            lab._count(host, "not_found")
            self._reply(404, b"")
            return

        # 1. authentication -------------------------------------------------
        # auth_failure fault: the handshake runs, then the credentials are refused,
        # as when the account's password was changed on the host
        failing = lab.faults.auth_failure(host)
        scheme, token = split_authorization(self.headers.get("Authorization"))
        encrypted = wsman.is_encrypted(self.headers.get("Content-Type", ""))
        if lab.auth == "basic":
            if lab.scheme == "http" and lab.encryption:
                # AllowUnencrypted=false: Basic over plain HTTP is refused like on Windows
                lab._count(host, "auth")
                self._unauthorized('Basic realm="WSMAN"')
                return
            try:
                if scheme != "basic" or failing:
                    raise AuthFailed("no Basic credentials")
                self.user = check_basic(token, lab.users)
            except AuthFailed:
                lab._count(host, "auth")
                self._unauthorized('Basic realm="WSMAN"')
                return
        else:
            if scheme in ("negotiate", "ntlm"):
                if self.ntlm is None or self.ntlm.complete:
                    self.ntlm, self.user = NtlmAcceptor(self.server.channel_binding), None
                try:
                    out = self.ntlm.step(token)
                    if self.ntlm.complete and failing:
                        raise AuthFailed("auth_failure fault")
                except AuthFailed:
                    self.ntlm, self.user = None, None
                    lab._count(host, "auth")
                    self._unauthorized("Negotiate")
                    return
                if not self.ntlm.complete:
                    lab._count(host, "auth")
                    self._unauthorized(f"Negotiate {out}" if out else "Negotiate")
                    return
                self.user = self.ntlm.user
            elif self.user is None or failing:
                self.ntlm, self.user = None, None
                lab._count(host, "auth")
                self._unauthorized("Negotiate")
                return

        # 2. the message ----------------------------------------------------
        if not body:
            lab._count(host, "empty")  # pywinrm's priming POST before encryption
            self._reply(200, b"")
            return
        try:
            if encrypted:
                if self.ntlm is None or not self.ntlm.complete:
                    raise wsman.WsmanParseError("encrypted body on a connection without NTLM context")
                xml = b"".join(self.ntlm.unseal(sig, sealed) for _, sig, sealed in wsman.split_encrypted(body))
            else:
                xml = body
            req = wsman.parse_request(xml)
        except (wsman.WsmanParseError, AuthFailed) as e:
            lab._count(host, "unparsed")
            log.info("%s: unreadable request: %s", host, e)
            self._reply(400, b"")
            return
        lab._count(host, req.name)
        protection = "tls" if lab.scheme == "https" else ("sealed" if encrypted else "plaintext")
        lab._protect(host, protection)
        if lab.scheme == "http" and lab.encryption and not encrypted:
            # AllowUnencrypted=false: an unsealed message over HTTP is refused (401, as Windows does)
            self._unauthorized("Negotiate")
            return

        # 3. faults, dispatch, reply -------------------------------------------
        decision = lab.faults.decide(host, req.name)
        if decision.drop == DROP_BEFORE:
            self._drop()
            return
        if decision.error_500:
            status, reply = 500, wsman.fault_response(wsman.internal_error_fault(), req.message_id, host)
        else:
            status, reply = lab._dispatch(self, host, req, xml, decision.slow_receive)
        if lab.trace:
            lab.trace(host, req.name, xml, reply)
        if decision.drop == DROP_AFTER:
            self._drop()
            return
        if encrypted:
            sig, sealed = self.ntlm.seal(reply)
            self._reply(status, wsman.frame_encrypted(len(reply), sig, sealed),
                        content_type=wsman.ENCRYPTED_CONTENT_TYPE)
        else:
            self._reply(status, reply, content_type="application/soap+xml;charset=UTF-8")


class _HostHTTPServer(ThreadingHTTPServer):
    """One listening socket (one simulated host); requests run in bounded threads."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, lab: "WinrmLabServer", host_config: LabHostConfig, port: int,
                 cert: ServerCert | None):
        self.lab = lab
        self.host_config = host_config
        self.ssl_context = cert.server_context() if cert else None
        self.channel_binding = cert.channel_binding() if cert else None
        super().__init__((host_config.address, port), _WinrmRequestHandler)

    def server_bind(self) -> None:
        # skip HTTPServer's socket.getfqdn() (a reverse lookup per host)
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.host_config.name
        self.server_port = self.server_address[1]

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # the handshake happens in the request thread (setup), not in the acceptor
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request, client_address) -> None:
        if not self.lab._slots.acquire(timeout=30):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.lab._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.lab._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.exception("%s: error serving %s", self.host_config.name, client_address)


# ---------------------------------------------------------------------------- server

class WinrmLabServer:
    """Real WinRM over HTTP(S) for many simulated hosts in one process.

    - ``hosts``: one :class:`LabHostConfig` per simulated host (distinct addresses)
    - ``handler``: ``handler(host, command_line, stdin) -> CommandResult``
    - ``scheme``: ``"http"`` (5985-style) or ``"https"`` (5986-style, cert from a lab CA)
    - ``auth``: ``"ntlm"`` (pyspnego acceptor, message encryption) or ``"basic"``
    - ``encryption``: True = ``AllowUnencrypted=false`` — over plain HTTP only NTLM-sealed
      messages are accepted (Basic over HTTP needs ``encryption=False``)
    - ``port``: one port for every host address; 0 picks a free one (``self.port``)
    - ``users``: lab accounts (name -> password); NTLM users go into ``NTLM_USER_FILE``
    - ``ca``: a :class:`LabCA` (HTTPS); a temporary one is created in ``cert_dir`` if None
    - ``max_connections``: bound on concurrent connections (threads) over all hosts

    Counters read by tests and benchmarks: ``requests[host][action]`` (every HTTP request
    under exactly one key: Create/Command/Send/Receive/Signal/Delete, ``auth`` for 401
    handshake legs and refusals, ``empty`` for the encryption priming POST) and
    ``protection[host]`` (``sealed``/``tls``/``plaintext`` WinRM messages).
    """

    def __init__(self, hosts: Iterable[LabHostConfig], handler: Handler | None = None, *,
                 scheme: str = "http", auth: str = "ntlm", encryption: bool = True, port: int = 0,
                 users: Mapping[str, str] | None = None, ca: LabCA | None = None,
                 cert_dir: str | None = None, max_connections: int = 512,
                 max_request_bytes: int = wsman.SERVER_MAX_ENVELOPE,
                 faults: FaultInjector | None = None,
                 trace: Callable[[str, str, bytes, bytes], None] | None = None):
        if scheme not in ("http", "https"):
            raise ValueError("scheme must be 'http' or 'https'")
        if auth not in ("ntlm", "basic"):
            raise ValueError("auth must be 'ntlm' or 'basic'")
        self.hosts = list(hosts)
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names) or len({h.address for h in self.hosts}) != len(self.hosts):
            raise ValueError("lab host names and addresses must be unique")
        self.handler: Handler = handler or EchoHandler()
        self.scheme, self.auth, self.encryption = scheme, auth, encryption
        self.port = port
        self.users = dict(users or {"Administrator": "Lab-" + uuid.uuid4().hex})
        self.ca = ca
        self._cert_dir = cert_dir
        self.max_request_bytes = max_request_bytes
        self.faults = faults or FaultInjector()
        self.trace = trace
        self.requests: dict[str, collections.Counter] = {h: collections.Counter() for h in names}
        self.protection: dict[str, collections.Counter] = {h: collections.Counter() for h in names}
        self._shells: dict[str, dict[str, _Shell]] = {h: {} for h in names}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._servers: list[_HostHTTPServer] = []
        self._conns: set = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tmp = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "WinrmLabServer":
        """Bind every host address and start serving (one acceptor thread)."""
        if self.auth == "ntlm":
            register_users(self.users)
        certs: dict[str, ServerCert] = {}
        if self.scheme == "https":
            if self.ca is None:
                if self._cert_dir is None:
                    import tempfile
                    self._tmp = tempfile.TemporaryDirectory(prefix="kmsdeploy-lab-ca-")
                    self._cert_dir = self._tmp.name
                self.ca = LabCA(self._cert_dir)
            for h in self.hosts:
                certs[h.name] = self.ca.issue(h.name, [h.address], list(h.dns_names))
        requested = self.port
        for _attempt in range(20):
            try:
                self._bind_all(certs, requested)
                break
            except OSError:
                for srv in self._servers:
                    srv.server_close()
                self._servers = []
                if requested:
                    raise  # an explicit port is in use: say so
        else:
            raise OSError("no free port shared by every lab host address")
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="winrm-lab-accept", daemon=True)
        self._thread.start()
        return self

    def _bind_all(self, certs: Mapping[str, ServerCert], port: int) -> None:
        # port 0: the first host picks a free port, every other host address reuses it
        for h in self.hosts:
            srv = _HostHTTPServer(self, h, port, certs.get(h.name))
            self._servers.append(srv)
            port = srv.server_address[1]
        self.port = port

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for srv in self._servers:
                sel.register(srv.socket, selectors.EVENT_READ, srv)
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    try:
                        key.data._handle_request_noblock()
                    except Exception:  # never let one host stop the acceptor
                        log.exception("accept failed")

    def stop(self) -> None:
        """Stop accepting, close every connection and listening socket."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for srv in self._servers:
            srv.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._servers = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "WinrmLabServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- information ---------------------------------------------------------
    def endpoint(self, host: str) -> str:
        """``scheme://address:port/wsman`` of one host."""
        h = next(h for h in self.hosts if h.name == host)
        return f"{self.scheme}://{h.address}:{self.port}/wsman"

    def request_total(self, host: str) -> int:
        """Every HTTP request the host received."""
        with self._lock:
            return sum(self.requests[host].values())

    def open_shells(self, host: str) -> int:
        with self._lock:
            return len(self._shells[host])

    def reset_counters(self) -> None:
        with self._lock:
            for c in (*self.requests.values(), *self.protection.values()):
                c.clear()

    def _count(self, host: str, key: str) -> None:
        with self._lock:
            self.requests[host][key] += 1

    def _protect(self, host: str, key: str) -> None:
        with self._lock:
            self.protection[host][key] += 1

    def _track(self, sock, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    # -- WinRS shell semantics -------------------------------------------------
    def _dispatch(self, conn: _WinrmRequestHandler, host: str, req: wsman.WsmanRequest,
                  xml: bytes, slow_receive: bool) -> tuple[int, bytes]:
        name = req.name
        if len(xml) > self.max_request_bytes:
            return 500, wsman.fault_response(wsman.Fault(
                "s:Sender", "w:EncodingLimit",
                f"The request size {len(xml)} exceeds the maximum envelope size {self.max_request_bytes} "
                "(MaxEnvelopeSizekb) of this service."), req.message_id, host)
        if name == "Create":
            if req.resource_uri != wsman.SHELL_URI:
                return 500, wsman.fault_response(wsman.Fault(
                    "s:Sender", "w:DestinationUnreachable",
                    f"The resource URI {req.resource_uri} is not supported by the lab endpoint."),
                    req.message_id, host)
            shell = _Shell(str(uuid.uuid4()).upper(), req.codepage, conn.user or "",
                           skip_cmd_shell=False)
            with self._lock:
                self._shells[host][shell.id] = shell
            address = f"{self.scheme}://{conn.server.host_config.address}:{self.port}/wsman"
            return 200, wsman.create_response(req, shell.id, address, shell.owner, conn.client_address[0])
        if name not in ("Delete", "Command", "Send", "Receive", "Signal"):
            return 500, wsman.fault_response(wsman.Fault(
                "s:Sender", "a:ActionNotSupported", f"The action {req.action} is not supported."),
                req.message_id, host)
        with self._lock:
            shell = self._shells[host].get(req.shell_id or "")
            if shell is not None and name == "Delete":
                del self._shells[host][shell.id]
        if shell is None:
            return 500, wsman.fault_response(wsman.shell_not_found_fault(req.shell_id), req.message_id, host)
        if name == "Delete":
            return 200, wsman.delete_response(req)
        if name == "Command":
            cmd = _Command(str(uuid.uuid4()).upper(), req.command_line)
            skip_cmd = req.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE"
            if not skip_cmd and len(cmd.command_line) > CMD_LINE_LIMIT:
                # cmd.exe refuses it: message on stderr, exit code 1 (reference "Shape of one run_ps() call")
                cmd.result = CommandResult(b"", CMD_LINE_TOO_LONG, 1)
                cmd.out, cmd.err = cmd.result.stdout, cmd.result.stderr
            with self._lock:
                shell.commands[cmd.id] = cmd
            return 200, wsman.command_response(req, cmd.id)
        with self._lock:
            cmd = shell.commands.get(req.command_id or "")
            if cmd is not None and name == "Signal":
                del shell.commands[cmd.id]
        if cmd is None:
            if name == "Signal":
                return 200, wsman.signal_response(req)
            return 500, wsman.fault_response(wsman.Fault(
                "s:Sender", "w:InvalidParameter",
                f"The command {req.command_id} does not exist in shell {shell.id}."), req.message_id, host)
        if name == "Signal":
            return 200, wsman.signal_response(req)
        if name == "Send":
            if req.stream_name != "stdin":
                return 500, wsman.fault_response(wsman.Fault(
                    "s:Sender", "w:InvalidParameter", f"Unknown input stream {req.stream_name!r}."),
                    req.message_id, host)
            with cmd.lock:
                if not cmd.stdin_done:
                    cmd.stdin += req.data
                    cmd.stdin_started = True
                    cmd.stdin_done = req.end
                if cmd.stdin_done and cmd.result is None:
                    self._run(host, cmd)
            return 200, wsman.send_response(req)
        # Receive
        deadline = time.monotonic() + req.operation_timeout
        if slow_receive:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return 500, wsman.fault_response(wsman.timed_out_fault(), req.message_id, host)
        while True:
            with cmd.lock:
                if cmd.result is None and not cmd.stdin_started:
                    self._run(host, cmd)
                if cmd.result is not None:
                    break
            if time.monotonic() >= deadline or self._stop.is_set():
                # stdin not complete yet: the process is still waiting for its input
                return 500, wsman.fault_response(wsman.timed_out_fault(), req.message_id, host)
            time.sleep(0.02)
        with cmd.lock:
            budget = max(1024, min(wsman.RECEIVE_CHUNK, (req.max_envelope_size - 4096) * 3 // 4))
            out, err, cmd.out, cmd.err = wsman.chunk_output(cmd.out, cmd.err, budget)
            done = not cmd.out and not cmd.err
            cmd.finished = done
            return 200, wsman.receive_response(req, cmd.id, out, err, done, cmd.result.exit_code)

    def _run(self, host: str, cmd: _Command) -> None:
        """Run the handler (caller holds ``cmd.lock``)."""
        try:
            result = self.handler(host, cmd.command_line, bytes(cmd.stdin))
        except Exception as e:  # a model bug shows as a failing process, not a dead endpoint
            log.exception("%s: lab handler failed", host)
            result = CommandResult(b"", f"lab handler error: {type(e).__name__}: {e}\r\n".encode(), 1)
        cmd.result = result
        cmd.out, cmd.err = result.stdout, result.stderr
