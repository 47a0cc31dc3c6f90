"""Authentication for the lab WinRM endpoint: HTTP Basic and NTLM (pyspnego acceptor).

NTLM facts follow ``reference/winrm-protocol.md`` "NTLM with pyspnego": the acceptor is
``spnego.server(protocol="ntlm")``; it reads credentials from the file named by the
``NTLM_USER_FILE`` environment variable (lines ``DOMAIN:USER:PASSWORD``, ``:user:pw`` for a
local user). The variable is process-wide, so every lab server in one process shares one
file: :func:`register_users` creates it once (0600) and appends missing users.

NTLM authenticates the *connection* (HTTP keep-alive): one :class:`NtlmAcceptor` per
connection, which afterwards seals/unseals the MS-WSMV encrypted bodies.
"""
from __future__ import annotations

import atexit
import base64
import binascii
import hmac
import os
import tempfile
import threading
from typing import Mapping

import spnego
import spnego.exceptions

_FILE_LOCK = threading.Lock()  # guards appends to the shared NTLM_USER_FILE within this process


class AuthFailed(Exception):
    """Credentials were refused (the server answers 401). Never carries the password."""


def register_users(users: Mapping[str, str]) -> str:
    """Make sure ``NTLM_USER_FILE`` lists ``users`` (name -> password); return its path.

    When the variable is unset, a private temporary file (mode 0600) is created and the
    variable is set for this process (pyspnego reads it per authentication).
    """
    with _FILE_LOCK:
        path = os.environ.get("NTLM_USER_FILE")
        if not path or not os.path.isfile(path):
            fd, path = tempfile.mkstemp(prefix="kmsdeploy-ntlm-", suffix=".users")
            os.close(fd)
            os.chmod(path, 0o600)
            os.environ["NTLM_USER_FILE"] = path
            atexit.register(_remove, path)
        with open(path, encoding="utf-8") as fh:
            have = set(fh.read().splitlines())
        known = {line.rsplit(":", 1)[0].lower(): line for line in have if line}
        for u, p in users.items():
            line = _user_line(u, p)
            other = known.get(line.rsplit(":", 1)[0].lower())
            if other is not None and other != line:
                # pyspnego takes the first line for a name: a second password would silently 401
                raise ValueError(f"lab user {u!r} is already registered in this process with another password; "
                                 "give each lab its own user name")
        missing = [line for line in (_user_line(u, p) for u, p in users.items()) if line not in have]
        if missing:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in missing))
        return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _user_line(user: str, password: str) -> str:
    if ":" in user or ":" in password or "\n" in password:
        raise ValueError("lab user names and passwords must not contain ':' or newlines")
    domain, _, name = user.rpartition("\\")
    return f"{domain}:{name}:{password}"


def split_authorization(header: str | None) -> tuple[str, str]:
    """``"Negotiate abc=="`` -> ``("negotiate", "abc==")``; missing header -> ``("", "")``."""
    if not header:
        return "", ""
    scheme, _, token = header.strip().partition(" ")
    return scheme.lower(), token.strip()


def check_basic(token: str, users: Mapping[str, str]) -> str:
    """Validate a Basic token; return the user name or raise :class:`AuthFailed`."""
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthFailed("malformed Basic credentials") from None
    expected = _lookup(users, user)
    if not sep or expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
        raise AuthFailed(f"Basic credentials refused for user {user!r}")
    return user


def _lookup(users: Mapping[str, str], user: str) -> str | None:
    for name, password in users.items():
        if name.lower() == user.lower() or name.rpartition("\\")[2].lower() == user.lower():
            return password
    return None


class NtlmAcceptor:
    """Server side of one connection's NTLM handshake and its message sealing.

    ``channel_bindings`` is the TLS ``tls-server-end-point`` binding on HTTPS (NTLMv2
    CBT, as requests_ntlm sends it), None on plain HTTP.
    """

    def __init__(self, channel_bindings: bytes | None = None):
        cbt = None
        if channel_bindings is not None:
            cbt = spnego.channel_bindings.GssChannelBindings(application_data=channel_bindings)
        self._ctx = spnego.server(protocol="ntlm", channel_bindings=cbt)

    @property
    def complete(self) -> bool:
        return bool(self._ctx.complete)

    @property
    def user(self) -> str:
        return str(self._ctx.client_principal or "")

    def step(self, token_b64: str) -> str | None:
        """Feed a client token; return the base64 reply token (challenge) or None when done."""
        try:
            token = base64.b64decode(token_b64, validate=True)
            out = self._ctx.step(token)
        except (binascii.Error, spnego.exceptions.SpnegoError) as e:
            raise AuthFailed(f"NTLM authentication failed: {type(e).__name__}") from None
        return base64.b64encode(out).decode() if out else None

    def unseal(self, signature: bytes, sealed: bytes) -> bytes:
        """Decrypt one MS-WSMV part and verify its signature."""
        try:
            return self._ctx.unwrap(signature + sealed).data
        except spnego.exceptions.SpnegoError as e:
            raise AuthFailed(f"cannot unseal message: {type(e).__name__}") from None

    def seal(self, data: bytes) -> tuple[bytes, bytes]:
        """Encrypt ``data``; returns ``(signature, sealed)`` (16-byte NTLM signature first)."""
        wrapped = self._ctx.wrap(data, encrypt=True).data
        return wrapped[:16], wrapped[16:]
