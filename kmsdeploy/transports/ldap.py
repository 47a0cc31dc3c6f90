"""LDAP transport (ldap3) to an Active Directory domain controller.

One connection per target for the whole run, bound once. Secure by default:

- ``ldaps`` (port 636, default): TLS from the first byte, certificate verified against
  ``ca_file`` (or the system store) and the name ``server_name`` (or the host);
- ``starttls`` (port 389): the same verification, upgraded before the bind;
- ``none``: plain LDAP, refused unless ``allow_plaintext`` is set, because a simple
  bind would send the password in clear.

Binds: ``simple`` (bind DN or UPN + password) or ``ntlm`` (``DOMAIN\\user``). ldap3's
NTLM needs MD4, which OpenSSL 3 (this Debian 12) does not provide through hashlib; the
bind then fails with a clear, non-transient error. The tested path is simple bind over LDAPS.

Every ldap3 exception is mapped here to :mod:`kmsdeploy.errors`; the password never
appears in a message (messages are also scrubbed of it, to be sure).
"""
from __future__ import annotations

import math
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import AuthenticationError, ProviderError, TimeoutError_, TransportError, UnreachableError
from ..model import Secret
from .base import Timeouts, Transport

#: SD flags control value: DACL only (reference §D.3) -- no SeSecurityPrivilege needed.
SD_FLAGS_DACL = 0x04
#: LDAP_SERVER_TREE_DELETE_OID (MS-ADTS 3.1.1.3.4.1.15)
TREE_DELETE_OID = "1.2.840.113556.1.4.805"


@dataclass
class LdapSettings:
    """Connection settings taken from host vars (see :meth:`LdapProvider.transport`)."""

    host: str
    port: int
    tls: str = "ldaps"  # ldaps | starttls | none
    user: str | None = None
    password: Secret | None = None
    auth: str = "simple"  # simple | ntlm
    ca_file: str | None = None
    server_name: str | None = None
    allow_plaintext: bool = False
    base: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    target: str | None = None


class LdapTransport(Transport):
    """An open, bound ldap3 connection; ``search``/``add``/``modify``/``delete`` map errors.

    ``base`` is the default naming context (from RootDSE unless set); ``requests``
    counts LDAP operations after the bind.
    """

    kind = "ldap"

    def __init__(self, settings: LdapSettings):
        self.settings = settings
        self.conn = None
        self.base: str | None = settings.base
        self.netbios_domain: str | None = None
        self.requests = 0
        if settings.tls not in ("ldaps", "starttls", "none"):
            raise TransportError(f"kmsdeploy_ldap_tls must be ldaps, starttls or none, not {settings.tls!r}",
                                 target=settings.target, transient=False)
        if settings.tls == "none" and not settings.allow_plaintext:
            raise TransportError("refusing plain LDAP without TLS: the bind would cross the network unprotected; "
                                 "use kmsdeploy_ldap_tls: ldaps (default) or starttls, or set "
                                 "kmsdeploy_ldap_allow_plaintext: true to opt in", target=settings.target, transient=False)
        if settings.auth not in ("simple", "ntlm"):
            raise TransportError(f"kmsdeploy_ldap_auth must be simple or ntlm, not {settings.auth!r}",
                                 target=settings.target, transient=False)

    # --- connection ----------------------------------------------------------------------

    def open(self) -> None:
        import ldap3
        from ldap3.core import exceptions as lx

        s = self.settings
        tls = None
        if s.tls in ("ldaps", "starttls"):
            names = [s.server_name] if s.server_name else None
            try:
                tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=s.ca_file, valid_names=names)
            except lx.LDAPException as exc:
                raise TransportError(f"TLS settings: {self._msg(exc)}", target=s.target, transient=False) from None
        server = ldap3.Server(s.host, port=s.port, use_ssl=(s.tls == "ldaps"), tls=tls, get_info=ldap3.NONE,
                              connect_timeout=s.timeouts.connect)
        kwargs: dict[str, Any] = dict(
            user=s.user, password=s.password.reveal() if s.password is not None else None,
            raise_exceptions=True,
            # ldap3 packs receive_timeout into SO_RCVTIMEO with struct 'LL': it must be an int
            receive_timeout=max(1, math.ceil(s.timeouts.operation)), auto_escape=False,
            auto_referrals=False, read_only=False)
        if s.auth == "ntlm":
            kwargs["authentication"] = ldap3.NTLM
        else:
            kwargs["authentication"] = ldap3.SIMPLE
        try:
            conn = ldap3.Connection(server, **kwargs)
            conn.open()
            if s.tls == "starttls":
                conn.start_tls()
            if not conn.bind():
                raise AuthenticationError(f"LDAP bind as {s.user!r} refused: {conn.result.get('description')}",
                                          target=s.target)
            self.conn = conn
        except Exception as exc:
            self._close_quietly()
            raise self._map(exc, "bind") from None
        if not self.base:
            entries = self.search("", "(objectClass=*)", "BASE", ["defaultNamingContext"])
            values = ((entries[0].get("raw_attributes") or {}).get("defaultNamingContext") if entries else None) or []
            if not values:
                raise ProviderError("RootDSE has no defaultNamingContext; set kmsdeploy_ldap_base", target=s.target)
            value = values[0] if isinstance(values, list) else values
            self.base = value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.unbind()
            except Exception:  # closing a dead socket must not mask the real error
                pass

    # --- operations ------------------------------------------------------------------------

    def search(self, base: str, flt: str, scope: str, attributes: Sequence[str], *,
               sd_flags: int | None = None, size_limit: int = 0) -> list[dict]:
        """Entries as ``{"dn", "attributes", "raw_attributes"}``; [] when ``base`` does not exist."""
        import ldap3
        from ldap3.core import exceptions as lx
        from ldap3.protocol.microsoft import security_descriptor_control

        controls = security_descriptor_control(sdflags=sd_flags) if sd_flags is not None else None
        scope_v = {"BASE": ldap3.BASE, "LEVEL": ldap3.LEVEL, "SUBTREE": ldap3.SUBTREE}[scope]
        self.requests += 1
        try:
            self._conn().search(base, flt, scope_v, attributes=list(attributes), controls=controls,
                                size_limit=size_limit)
        except lx.LDAPNoSuchObjectResult:
            return []
        except lx.LDAPSizeLimitExceededResult:
            pass
        except Exception as exc:
            raise self._map(exc, f"search {base!r}") from None
        return [r for r in self._conn().response if r.get("type") == "searchResEntry"]

    def add(self, dn: str, object_classes: Sequence[str], attributes: dict) -> None:
        self.requests += 1
        try:
            self._conn().add(dn, list(object_classes), attributes)
        except Exception as exc:
            raise self._map(exc, f"add {dn!r}") from None

    def modify(self, dn: str, changes: dict, *, sd_flags: int | None = None) -> None:
        from ldap3.protocol.microsoft import security_descriptor_control

        controls = security_descriptor_control(sdflags=sd_flags) if sd_flags is not None else None
        self.requests += 1
        try:
            self._conn().modify(dn, changes, controls=controls)
        except Exception as exc:
            raise self._map(exc, f"modify {dn!r}") from None

    def delete(self, dn: str, *, tree: bool = False) -> None:
        controls = [(TREE_DELETE_OID, True, None)] if tree else None
        self.requests += 1
        try:
            self._conn().delete(dn, controls=controls)
        except Exception as exc:
            raise self._map(exc, f"delete {dn!r}") from None

    def _conn(self):
        if self.conn is None:
            raise TransportError("LDAP connection is not open", target=self.settings.target)
        return self.conn

    # --- error mapping -----------------------------------------------------------------------

    def _msg(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        pw = self.settings.password.reveal() if self.settings.password is not None else ""
        if pw:
            text = text.replace(pw, "(sensitive)")
        return text[:500]

    def _map(self, exc: BaseException, what: str) -> Exception:
        """An ldap3 (or socket/ssl) exception as a kmsdeploy error."""
        from ldap3.core import exceptions as lx

        t = self.settings.target
        where = f"{self.settings.host}:{self.settings.port}"
        if isinstance(exc, (TransportError, ProviderError)):
            return exc
        msg = self._msg(exc)
        if isinstance(exc, lx.LDAPInvalidCredentialsResult):
            return AuthenticationError(f"LDAP bind to {where} as {self.settings.user!r} refused: invalid credentials",
                                       target=t)
        if isinstance(exc, lx.LDAPStrongerAuthRequiredResult):
            return TransportError(f"{where} requires transport encryption for this bind (use ldaps or starttls)",
                                  target=t, transient=False)
        if isinstance(exc, (ValueError, lx.LDAPPackageUnavailableError)) and "md4" in msg.lower():
            return TransportError("NTLM bind needs MD4, which this Python's OpenSSL does not provide; use a simple "
                                  "bind over LDAPS (kmsdeploy_ldap_auth: simple)", target=t, transient=False)
        if isinstance(exc, lx.LDAPOperationResult):
            return ProviderError(f"LDAP {what} failed: {exc.description or ''} {exc.message or ''}".strip(), target=t)
        lowered = msg.lower()
        if "certificate" in lowered or "ssl" in lowered or isinstance(exc, (lx.LDAPCertificateError, lx.LDAPStartTLSError,
                                                                            ssl.SSLError)):
            if "timed out" not in lowered:
                return TransportError(f"TLS with {where} failed (certificate not trusted or name mismatch; check "
                                      f"kmsdeploy_ldap_ca_file and kmsdeploy_ldap_server_name): {_short_tls(msg)}",
                                      target=t, transient=False)
        if isinstance(exc, (lx.LDAPResponseTimeoutError, socket.timeout, TimeoutError)) or "timed out" in lowered:
            return TimeoutError_(f"LDAP {what} on {where} timed out", target=t)
        if isinstance(exc, (lx.LDAPSocketOpenError, lx.LDAPSocketSendError, lx.LDAPSocketReceiveError,
                            lx.LDAPSocketCloseError, ConnectionError, OSError)) or "socket" in lowered:
            return UnreachableError(f"cannot reach LDAP server {where}: {msg}", target=t)
        if isinstance(exc, lx.LDAPException):
            return ProviderError(f"LDAP {what} failed: {msg}", target=t)
        return TransportError(f"LDAP {what} on {where} failed: {type(exc).__name__}: {msg}", target=t, transient=False)


def _short_tls(msg: str) -> str:
    for needle in ("CERTIFICATE_VERIFY_FAILED", "doesn't match", "does not match", "hostname"):
        i = msg.find(needle)
        if i >= 0:
            return msg[i:i + 160]
    return msg[:200]
