"""DNS transport: one TCP connection per target for the run, pipelined exchanges, TSIG.

``exchange(messages)`` signs every message (TSIG, unless the host opted into unsigned
updates), sends them all on the one TCP connection, then receives all answers and
matches them by message id (BIND may answer pipelined queries out of order). One
``exchange`` is one round trip and counts as one request; ``messages`` counts DNS
messages. dnspython and socket exceptions are mapped to :mod:`kmsdeploy.errors` here and
nowhere else; no message ever contains the TSIG secret (``dns.tsig.Key``'s own repr
does, so the key object never leaves this module).
"""
from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Collection, Sequence

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig

from ..errors import AuthenticationError, ProviderError, TimeoutError_, UnreachableError
from ..model import Secret
from .base import Transport

#: TSIG algorithms accepted in host vars (dnspython names; hmac-md5 deliberately left out)
ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}

_KEY_FILE_RE = re.compile(
    r'key\s+"?([A-Za-z0-9_.-]+)"?\s*\{\s*algorithm\s+"?([A-Za-z0-9-]+)"?\s*;\s*secret\s+"([A-Za-z0-9+/=]+)"\s*;\s*\}\s*;')


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key: ``name``, ``algorithm`` (e.g. hmac-sha256) and the ``secret`` (base64, a Secret)."""

    name: str
    algorithm: str
    secret: Secret

    def __repr__(self) -> str:
        return f"TsigKey(name={self.name!r}, algorithm={self.algorithm!r}, secret=(sensitive))"


def parse_key_file(text: str, origin: str = "key file") -> TsigKey:
    """Parse ``key "name" { algorithm hmac-sha256; secret "..."; };`` as written by tsig-keygen.

    Raises ValueError naming ``origin`` (never quoting the content) when the format is not met.
    """
    text = re.sub(r"(#|//)[^\n]*", "", text)
    matches = _KEY_FILE_RE.findall(text)
    if len(matches) != 1:
        raise ValueError(f"{origin}: expected exactly one 'key \"NAME\" {{ algorithm ALG; secret \"...\"; }};' "
                         f"block as written by tsig-keygen (found {len(matches)})")
    name, alg, secret = matches[0]
    alg = alg.lower()
    if alg not in ALGORITHMS:
        raise ValueError(f"{origin}: TSIG algorithm {alg!r} is not supported (use one of {', '.join(ALGORITHMS)})")
    return TsigKey(name, alg, Secret(secret, origin))


class DnsTransport(Transport):
    """One TCP connection to a DNS server; ``exchange`` pipelines a batch of messages."""

    kind = "rfc2136"

    def __init__(self, address: str, port: int = 53, *, tsig: TsigKey | None, timeout: float = 10.0,
                 connect_timeout: float = 10.0, target: str | None = None):
        self.address = address
        self.port = int(port)
        self.tsig = tsig
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.target = target
        self.requests = 0
        self.messages = 0
        self.reconnects = 0
        self._sock: socket.socket | None = None
        self.__key: dns.tsig.Key | None = None

    # -- session ----------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    def open(self) -> None:
        self._load_key()
        self._connect()

    def _load_key(self) -> None:
        if self.tsig is not None and self.__key is None:
            try:
                self.__key = dns.tsig.Key(self.tsig.name, self.tsig.secret.reveal(), ALGORITHMS[self.tsig.algorithm])
            except Exception:  # bad base64 etc.; never show the value
                raise AuthenticationError(f"TSIG key {self.tsig.name!r}: the secret is not valid base64",
                                          target=self.target) from None

    def _connect(self) -> None:
        self._close_socket()
        try:
            sock = socket.create_connection((self.address, self.port), timeout=self.connect_timeout)
        except ConnectionRefusedError:
            raise UnreachableError(f"DNS server {self.where} refused the connection", target=self.target) from None
        except (socket.timeout, TimeoutError):
            raise TimeoutError_(f"DNS server {self.where} did not accept a TCP connection within "
                                f"{self.connect_timeout:g} s", target=self.target) from None
        except OSError as exc:
            raise UnreachableError(f"DNS server {self.where} is unreachable: {exc.strerror or exc}",
                                   target=self.target) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        self._close_socket()

    # -- messages ---------------------------------------------------------
    def sign(self, message: dns.message.Message) -> dns.message.Message:
        """Attach the TSIG key (no-op for unsigned hosts)."""
        if self.__key is not None:
            message.use_tsig(self.__key)
        return message

    def exchange(self, messages: Sequence[dns.message.Message], *,
                 unsigned: Collection[int] = ()) -> list[dns.message.Message]:
        """Send every message, then read every answer (one round trip). Answers come back in the
        order of ``messages``. Reconnects once when the server closed the idle connection before
        answering anything. Messages whose id is in ``unsigned`` go without the TSIG key
        (preflight asks whether the zone takes unsigned updates, in the same round trip)."""
        if not messages:
            return []
        if self._sock is None:
            self.open()
        ids = [m.id for m in messages]
        if len(set(ids)) != len(ids):
            raise ValueError("message ids in one exchange must be unique")
        for m in messages:
            if m.id not in unsigned:
                self.sign(m)
        self.requests += 1
        self.messages += len(messages)
        try:
            return self._exchange_once(messages)
        except _ClosedEarly:
            # BIND closes idle TCP connections (tcp-idle-timeout); nothing was answered, so
            # resend once on a fresh connection. Updates carry prerequisites, so even a
            # processed-but-unanswered update cannot be applied twice silently.
            self.reconnects += 1
            self._connect()
            try:
                return self._exchange_once(messages)
            except _ClosedEarly:
                raise UnreachableError(f"DNS server {self.where} closed the connection without answering",
                                       target=self.target) from None

    def transfer(self, zone: str) -> "dns.zone.Zone":
        """The whole zone by AXFR (RFC 5936), TSIG-signed when the host has a key.

        A transfer is a stream of messages, so it runs on its own TCP connection (one more
        round trip, counted in ``requests``); pruning uses it to list a zone's sets. A refusal
        raises :class:`TransferRefused` (the caller says how to allow it).
        """
        import dns.query
        import dns.xfr
        import dns.zone

        self._load_key()
        origin = dns.name.from_text(zone)
        query = self.sign(dns.message.make_query(origin, dns.rdatatype.AXFR))
        z = dns.zone.Zone(origin, relativize=False)
        self.requests += 1
        try:
            dns.query.inbound_xfr(self.address, z, query=query, port=self.port, timeout=self.timeout,
                                  lifetime=self.timeout)
        except dns.xfr.TransferError as exc:
            raise TransferRefused(f"DNS server {self.where} answered {dns.rcode.to_text(exc.rcode)} to a zone "
                                  f"transfer (AXFR) of {zone}", target=self.target) from None
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime, dns.tsig.BadSignature,
                dns.tsig.BadTime, dns.message.UnknownTSIGKey) as exc:
            raise self._auth_error(exc) from None
        except dns.exception.Timeout:
            raise self._timeout() from None
        except ConnectionRefusedError:
            raise UnreachableError(f"DNS server {self.where} refused the connection", target=self.target) from None
        except (EOFError, ConnectionResetError):
            raise TransferRefused(f"DNS server {self.where} closed the connection during a zone transfer (AXFR) "
                                  f"of {zone}", target=self.target) from None
        except OSError as exc:
            raise UnreachableError(f"DNS server {self.where}: {exc.strerror or exc}", target=self.target) from None
        except dns.exception.DNSException as exc:
            raise ProviderError(f"DNS server {self.where} sent a malformed zone transfer of {zone}: {exc}",
                                target=self.target) from None
        return z

    def _exchange_once(self, messages: Sequence[dns.message.Message]) -> list[dns.message.Message]:
        assert self._sock is not None
        sock = self._sock
        deadline = time.monotonic() + self.timeout
        try:
            wires = [m.to_wire() for m in messages]
        except dns.exception.DNSException as exc:
            raise ProviderError(f"cannot encode a DNS message for {self.where}: {exc}", target=self.target) from None
        payload = b"".join(struct.pack("!H", len(w)) + w for w in wires)
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            raise _ClosedEarly() from None
        except (socket.timeout, TimeoutError):
            raise self._timeout() from None
        except OSError as exc:
            raise UnreachableError(f"DNS server {self.where}: {exc.strerror or exc}", target=self.target) from None
        by_id = {m.id: m for m in messages}
        answers: dict[int, dns.message.Message] = {}
        while len(answers) < len(messages):
            try:
                header = self._recv_exact(2, deadline)
                if header is None:
                    if not answers:
                        raise _ClosedEarly()
                    raise UnreachableError(f"DNS server {self.where} closed the connection after "
                                           f"{len(answers)} of {len(messages)} answers", target=self.target)
                (length,) = struct.unpack("!H", header)
                wire = self._recv_exact(length, deadline)
                if wire is None:
                    raise UnreachableError(f"DNS server {self.where} closed the connection mid-answer",
                                           target=self.target)
            except ConnectionResetError:
                if not answers:
                    raise _ClosedEarly() from None
                raise UnreachableError(f"DNS server {self.where} reset the connection", target=self.target) from None
            except (socket.timeout, TimeoutError):
                raise self._timeout() from None
            if len(wire) < 12:
                raise ProviderError(f"DNS server {self.where} sent a malformed answer", target=self.target)
            (msg_id,) = struct.unpack("!H", wire[:2])
            query = by_id.get(msg_id)
            if query is None or msg_id in answers:
                continue  # stray answer: ignore (cannot be ours)
            answers[msg_id] = self._parse(wire, query)
        return [answers[m.id] for m in messages]

    def _recv_exact(self, n: int, deadline: float) -> bytes | None:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self._sock.settimeout(left)
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _parse(self, wire: bytes, query: dns.message.Message) -> dns.message.Message:
        keyring = query.keyring if self.__key is not None else None  # None for an unsigned query
        try:
            answer = dns.message.from_wire(wire, keyring=keyring, request_mac=query.mac if keyring else b"")
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime,
                dns.tsig.PeerBadTruncation, dns.tsig.BadSignature, dns.tsig.BadTime,
                dns.tsig.BadAlgorithm) as exc:
            raise self._auth_error(exc) from None
        except dns.message.UnknownTSIGKey:
            raise AuthenticationError(f"DNS server {self.where} signed its answer with a TSIG key we do not hold",
                                      target=self.target) from None
        except dns.exception.FormError as exc:
            if self.__key is not None and "tsig" in str(exc).lower():
                raise self._auth_error(exc) from None
            raise ProviderError(f"DNS server {self.where} sent a malformed answer: {exc}", target=self.target) from None
        except dns.exception.DNSException as exc:
            raise ProviderError(f"DNS server {self.where} sent a malformed answer: {exc}", target=self.target) from None
        if not query.is_response(answer):
            raise ProviderError(f"DNS server {self.where} answered a different question", target=self.target)
        if keyring is not None and answer.rcode() == dns.rcode.NOTAUTH and not answer.had_tsig:
            # BADKEY/BADSIG answers are unsigned: the server could not verify our key
            raise self._auth_error(None)
        return answer

    def _auth_error(self, exc: Exception | None) -> AuthenticationError:
        name = self.tsig.name if self.tsig else "(none)"
        why = {
            "PeerBadKey": "the server does not know this key name/algorithm",
            "PeerBadSignature": "bad signature: wrong secret or algorithm",
            "PeerBadTime": "clock skew between this machine and the server",
            "BadSignature": "the server's answer did not verify with our secret",
        }.get(type(exc).__name__ if exc else "", "the request was not authenticated")
        return AuthenticationError(f"TSIG key {name!r} rejected by the server {self.where} ({why})",
                                   target=self.target)

    def _timeout(self) -> TimeoutError_:
        return TimeoutError_(f"DNS server {self.where} did not answer within {self.timeout:g} s", target=self.target)


class TransferRefused(ProviderError):
    """The server would not transfer the zone (no ``allow-transfer`` for this key, typically)."""


class _ClosedEarly(Exception):
    """The server closed the connection before answering anything (internal)."""
