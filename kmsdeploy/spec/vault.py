"""Ansible Vault: read (and write) ``$ANSIBLE_VAULT`` envelopes without importing Ansible.

The format (Ansible's ``VaultAES256``, documented in Ansible's "Vault format" page)::

    $ANSIBLE_VAULT;1.1;AES256              <- or  $ANSIBLE_VAULT;1.2;AES256;<vault id>
    6332613965...                          <- hex, in lines of 80 characters

The hex text decodes to three lines ``hex(salt)\\nhex(hmac)\\nhex(ciphertext)``. From the
password and the salt, PBKDF2-HMAC-SHA256 (10,000 iterations) derives 80 bytes: a 32-byte
AES key, a 32-byte HMAC key and a 16-byte counter block. The HMAC-SHA256 of the ciphertext
is checked (in constant time) before anything is decrypted; the ciphertext is AES-256-CTR
of the PKCS#7-padded plaintext. All cryptography comes from the ``cryptography`` package.

:class:`VaultSecrets` holds the ``(vault id, password)`` pairs, read from the sources
Ansible reads: ``--vault-id [LABEL@]SOURCE``, ``--vault-password-file FILE``,
``ANSIBLE_VAULT_IDENTITY_LIST`` and ``ANSIBLE_VAULT_PASSWORD_FILE``. A source is a file
holding the password, or an executable that prints it. Sources are read the first time a
value needs decrypting (a run without vault data never reads them).

Errors are one :class:`VaultError` whose message never contains a password or plaintext.
"""
from __future__ import annotations

import binascii
import os
import signal
import stat
import subprocess
import threading
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

HEADER = "$ANSIBLE_VAULT"
#: the label of a password given without one (Ansible's DEFAULT_VAULT_IDENTITY)
DEFAULT_ID = "default"
KDF_ITERATIONS = 10_000
LINE_WIDTH = 80
#: a password script that takes longer than this is killed (Ansible waits forever)
SCRIPT_TIMEOUT = 30.0
#: what a password file/script may hold; anything larger is a mistake
MAX_PASSWORD_BYTES = 64 * 1024
NO_SECRETS = ("no vault password was given (use --vault-password-file FILE, --vault-id LABEL@FILE "
              "or ANSIBLE_VAULT_PASSWORD_FILE)")


class VaultError(Exception):
    """A vault envelope cannot be read or decrypted, or a password source is unusable."""


@dataclass(frozen=True)
class Envelope:
    """A parsed ``$ANSIBLE_VAULT`` text (nothing decrypted yet)."""

    version: str  # "1.1" | "1.2"
    cipher: str  # "AES256"
    vault_id: str | None  # the label of a 1.2 envelope
    salt: bytes
    hmac: bytes
    ciphertext: bytes


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("ascii")
        except UnicodeEncodeError:
            raise VaultError("not an Ansible Vault envelope: it holds non-ASCII characters") from None
    return bytes(data)


def is_vault(data: bytes | str) -> bool:
    """True when ``data`` starts with the ``$ANSIBLE_VAULT`` header (as Ansible decides)."""
    if isinstance(data, str):
        return data.startswith(HEADER)
    return bytes(data[:len(HEADER)]) == HEADER.encode()


def _unhex(text: bytes, what: str) -> bytes:
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise VaultError(f"corrupted vault data: the {what} is not valid hexadecimal") from None


def parse(data: bytes | str) -> Envelope:
    """Parse an envelope (a whole file or a ``!vault`` value). Raises :class:`VaultError`."""
    raw = _as_bytes(data)
    lines = raw.splitlines()
    if not lines or not lines[0].strip().startswith(HEADER.encode()):
        raise VaultError(f"not an Ansible Vault envelope (the first line must be '{HEADER};1.1;AES256' "
                         f"or '{HEADER};1.2;AES256;LABEL')")
    parts = [p.strip().decode("ascii", "replace") for p in lines[0].strip().split(b";")]
    if len(parts) < 3 or parts[0] != HEADER:
        raise VaultError(f"malformed vault header {lines[0].strip().decode('ascii', 'replace')[:60]!r} "
                         f"(expected '{HEADER};1.1;AES256' or '{HEADER};1.2;AES256;LABEL')")
    version, cipher = parts[1], parts[2]
    if version not in ("1.1", "1.2"):
        raise VaultError(f"unsupported vault format version {version[:20]!r} (1.1 and 1.2 are supported)")
    if cipher != "AES256":
        raise VaultError(f"unsupported vault cipher {cipher[:20]!r} (only AES256 is supported)")
    vault_id = parts[3] if len(parts) >= 4 and parts[3] else None
    body = b"".join(line.strip() for line in lines[1:])
    if not body:
        raise VaultError("corrupted vault data: nothing after the header")
    inner = _unhex(body, "payload")
    fields = inner.split(b"\n", 2)
    if len(fields) != 3:
        raise VaultError("corrupted vault data: the payload is truncated (it needs a salt, an HMAC and a ciphertext)")
    salt = _unhex(fields[0], "salt")
    mac = _unhex(fields[1], "HMAC")
    ciphertext = _unhex(fields[2], "ciphertext")
    if not salt or len(mac) != 32 or not ciphertext or len(ciphertext) % 16:
        raise VaultError("corrupted vault data: the salt, HMAC or ciphertext has the wrong length (truncated?)")
    return Envelope(version, cipher, vault_id, salt, mac, ciphertext)


def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=2 * 32 + 16, salt=salt, iterations=KDF_ITERATIONS)
    derived = kdf.derive(password)
    return derived[:32], derived[32:64], derived[64:]


def _open(env: Envelope, password: bytes) -> bytes | None:
    """Plaintext, or None when the HMAC does not match (wrong password or altered data)."""
    aes_key, mac_key, iv = _keys(password, env.salt)
    mac = HMAC(mac_key, hashes.SHA256())
    mac.update(env.ciphertext)
    try:
        mac.verify(env.hmac)  # constant time; nothing is decrypted before this passes
    except InvalidSignature:
        return None
    decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).decryptor()
    padded = decryptor.update(env.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise VaultError("corrupted vault data: bad padding after decryption") from None


def _pairs(secrets: "VaultSecrets | Iterable[tuple[str, bytes | str]] | None") -> list[tuple[str, bytes]]:
    if secrets is None:
        return []
    if isinstance(secrets, VaultSecrets):
        return secrets.secrets()
    return [(vid, p.encode() if isinstance(p, str) else bytes(p)) for vid, p in secrets]


def decrypt(data: bytes | str, secrets: "VaultSecrets | Iterable[tuple[str, bytes | str]] | None") -> bytes:
    """Decrypt an envelope with the first secret that opens it.

    Secrets whose vault id matches the envelope's (``default`` for 1.1) are tried first,
    then every other one, as Ansible does (unless ``ANSIBLE_VAULT_ID_MATCH`` restricted a
    :class:`VaultSecrets` to matching ids). Raises :class:`VaultError`.
    """
    env = parse(data)
    pairs = _pairs(secrets)
    if not pairs:
        raise VaultError(NO_SECRETS)
    wanted = env.vault_id or DEFAULT_ID
    only_matching = isinstance(secrets, VaultSecrets) and secrets.id_match
    ordered = [p for p in pairs if p[0] == wanted]
    if not only_matching:
        ordered += [p for p in pairs if p[0] != wanted]
    for _, password in ordered:
        plain = _open(env, password)
        if plain is not None:
            return plain
    ids = ", ".join(dict.fromkeys(vid for vid, _ in (ordered or pairs)))
    if only_matching and not ordered:
        raise VaultError(f"no vault password has the vault id {wanted!r} (ANSIBLE_VAULT_ID_MATCH is set; given: {ids})")
    raise VaultError(f"wrong vault password or corrupted data: none of the {len(ordered)} vault password(s) "
                     f"given (vault ids: {ids}) decrypts it")


def encrypt(plaintext: bytes | str, password: bytes | str, vault_id: str | None = None,
            salt: bytes | None = None) -> str:
    """An envelope Ansible decrypts (1.1, or 1.2 when ``vault_id`` is set and not ``default``)."""
    data = plaintext.encode() if isinstance(plaintext, str) else bytes(plaintext)
    secret = password.encode() if isinstance(password, str) else bytes(password)
    if not secret:
        raise VaultError("the vault password is empty")
    salt = os.urandom(32) if salt is None else salt
    aes_key, mac_key, iv = _keys(secret, salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = HMAC(mac_key, hashes.SHA256())
    mac.update(ciphertext)
    inner = b"\n".join([binascii.hexlify(salt), binascii.hexlify(mac.finalize()), binascii.hexlify(ciphertext)])
    body = binascii.hexlify(inner).decode("ascii")
    if vault_id and vault_id != DEFAULT_ID:
        if any(c in vault_id for c in ";\r\n") or not vault_id.strip():
            raise VaultError("a vault id may not be blank or contain ';' or line breaks")
        header = f"{HEADER};1.2;AES256;{vault_id}"
    else:
        header = f"{HEADER};1.1;AES256"
    return "\n".join([header] + [body[i:i + LINE_WIDTH] for i in range(0, len(body), LINE_WIDTH)]) + "\n"


# ---------------------------------------------------------------------------- password sources

def split_vault_id(slug: str, default_label: str = DEFAULT_ID) -> tuple[str, str]:
    """``LABEL@SOURCE`` -> (LABEL, SOURCE); a bare ``SOURCE`` gets the default label."""
    if "@" in slug:
        label, source = slug.split("@", 1)
        return label or default_label, source
    return default_label, slug


def _is_client_script(path: str) -> bool:
    # Ansible passes --vault-id LABEL only to "client" scripts: a name ending in -client(.ext)
    return os.path.splitext(os.path.basename(path))[0].endswith("-client")


def _is_executable(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def read_password(label: str, source: str, *, timeout: float = SCRIPT_TIMEOUT) -> bytes:
    """The password of one source: a file's content, or what an executable prints.

    Files are stripped of surrounding whitespace, script output of line breaks (as Ansible).
    A client script (``*-client``) is run with ``--vault-id LABEL``. Raises :class:`VaultError`.
    """
    if source in ("prompt", "prompt_ask_vault_pass"):
        raise VaultError(f"vault id {label!r}: prompting for a password is not supported "
                         "(kmsdeploy runs unattended); give a password file or script")
    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isdir(path):
        raise VaultError(f"vault password file {path}: is a directory")
    if not os.path.exists(path):
        raise VaultError(f"vault password file {path}: not found")
    if _is_executable(path):
        argv = [path] + (["--vault-id", label] if _is_client_script(path) else [])
        try:
            # own session: on a timeout the whole process group goes, not only the script
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise VaultError(f"vault password script {path}: cannot run it ({e.strerror or type(e).__name__})") from None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:  # pragma: no cover - already gone
                pass
            proc.communicate()
            raise VaultError(f"vault password script {path}: no answer within {timeout:g} s (killed)") from None
        if proc.returncode != 0:
            raise VaultError(f"vault password script {path}: exited with status {proc.returncode}")
        if len(out) > MAX_PASSWORD_BYTES:
            raise VaultError(f"vault password script {path}: printed more than {MAX_PASSWORD_BYTES // 1024} KiB")
        password = out.strip(b"\r\n")
        if not password:
            raise VaultError(f"vault password script {path}: printed an empty password")
        return password
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_PASSWORD_BYTES + 1)
    except OSError as e:
        raise VaultError(f"vault password file {path}: cannot read it ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_PASSWORD_BYTES:
        raise VaultError(f"vault password file {path}: larger than {MAX_PASSWORD_BYTES // 1024} KiB")
    password = raw.strip()
    if not password:
        raise VaultError(f"vault password file {path}: is empty")
    return password


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "y", "t")


class VaultSecrets:
    """The vault passwords of one run: ``(vault id, source)`` pairs, read on first use.

    Build it with :meth:`from_options` (command line + environment, in Ansible's order)
    or :meth:`from_passwords` (tests, API). Reading is thread-safe and happens once; a
    source that fails makes every later decryption fail with the same message.
    """

    def __init__(self, sources: Sequence[tuple[str, str]] = (), *, passwords: Sequence[tuple[str, bytes]] = (),
                 id_match: bool = False, timeout: float = SCRIPT_TIMEOUT):
        self.sources = tuple(sources)
        self.id_match = id_match
        self.timeout = timeout
        self._given = [(vid, bytes(p)) for vid, p in passwords]
        self._loaded: list[tuple[str, bytes]] | None = None if self.sources else list(self._given)
        self._error: VaultError | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, password_files: Sequence[str] = (), vault_ids: Sequence[str] = (),
                     environ: Mapping[str, str] | None = None) -> "VaultSecrets":
        """Sources in Ansible's order: ``ANSIBLE_VAULT_IDENTITY_LIST``, ``--vault-id``,
        ``--vault-password-file``, ``ANSIBLE_VAULT_PASSWORD_FILE``. ``ANSIBLE_VAULT_IDENTITY``
        renames the default label; ``ANSIBLE_VAULT_ID_MATCH`` tries only matching ids."""
        environ = os.environ if environ is None else environ
        default = (environ.get("ANSIBLE_VAULT_IDENTITY") or DEFAULT_ID).strip() or DEFAULT_ID
        slugs = [s.strip() for s in (environ.get("ANSIBLE_VAULT_IDENTITY_LIST") or "").split(",") if s.strip()]
        slugs += list(vault_ids)
        sources = [split_vault_id(s, default) for s in slugs]
        sources += [(default, f) for f in password_files]
        env_file = (environ.get("ANSIBLE_VAULT_PASSWORD_FILE") or "").strip()
        if env_file:
            sources.append((default, env_file))
        for label, source in sources:
            if not source:
                raise VaultError(f"vault id {label!r}: no password file given (use LABEL@FILE)")
        return cls(sources, id_match=_truthy(environ.get("ANSIBLE_VAULT_ID_MATCH")))

    @classmethod
    def from_passwords(cls, pairs: Iterable[tuple[str | None, bytes | str]]) -> "VaultSecrets":
        """Secrets from ``(vault id, password)`` pairs already in hand (None = default id)."""
        return cls(passwords=[(vid or DEFAULT_ID, p.encode() if isinstance(p, str) else bytes(p)) for vid, p in pairs])

    def __bool__(self) -> bool:
        return bool(self.sources or self._given)

    def __repr__(self) -> str:  # never the passwords
        labels = [label for label, _ in self.sources] + [vid for vid, _ in self._given]
        return f"VaultSecrets(vault ids: {', '.join(labels) or 'none'})"

    def secrets(self) -> list[tuple[str, bytes]]:
        """The ``(vault id, password)`` pairs, reading every source the first time."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._loaded is None:
                try:
                    self._loaded = self._given + [(label, read_password(label, source, timeout=self.timeout))
                                                  for label, source in self.sources]
                except VaultError as e:
                    self._error = e
                    raise
            return list(self._loaded)

