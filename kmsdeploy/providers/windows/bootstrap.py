"""The small command line and the stdin framing that carry the runner to a Windows host.

Real Windows caps a command line at about 8,191 characters, and ``-EncodedCommand``
(base64 of UTF-16LE) makes a script ~2.7x longer (winrm-protocol.md), so only a short,
fixed bootstrap goes on the command line. It:

1. sets ``[Console]::InputEncoding`` (and OutputEncoding) to UTF-8 without BOM,
2. reads stdin to the end,
3. splits it at :data:`MARKER` into the runner source and the payload text,
4. checks the runner's SHA-256 against the hash baked into the command line,
5. runs the runner with the payload TEXT as its one argument.

The payload is JSON: ``json.dumps`` escapes every newline, so :data:`MARKER` (which
contains raw newlines) can never occur inside it, and a test checks the runner does
not contain it either. Values in the payload are data; the bootstrap never pastes
them into source. Pure functions; the lab model uses :func:`parse_command_line` and
:func:`split_stdin` to recognise exactly what a real host would receive.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

#: separator between the runner source and the payload on stdin
MARKER = "\n#KMSDEPLOY-PAYLOAD\n"
#: real Windows' command-line limit through cmd.exe (winrm-protocol.md)
COMMAND_LINE_LIMIT = 8191
RUNNER_PATH = Path(__file__).with_name("runner.ps1")

_BOOTSTRAP = (
    "$ErrorActionPreference='Stop';"
    "$u=New-Object Text.UTF8Encoding $false;"
    "[Console]::InputEncoding=$u;[Console]::OutputEncoding=$u;"
    "$s=[Console]::In.ReadToEnd();"
    "$m=[string][char]10+'#KMSDEPLOY-PAYLOAD'+[char]10;"
    "$k=$s.IndexOf($m);"
    "if($k -lt 0){[Console]::Error.Write('kmsdeploy: no payload marker on stdin');exit 2};"
    "$r=$s.Substring(0,$k);"
    "$h=-join([Security.Cryptography.SHA256]::Create().ComputeHash($u.GetBytes($r))|ForEach-Object{$_.ToString('X2')});"
    "if($h -ne '@@HASH@@'){[Console]::Error.Write('kmsdeploy: runner hash mismatch');exit 3};"
    "& ([scriptblock]::Create($r)) $s.Substring($k+$m.Length)"
)

_PREFIX = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
_ENCODED_RE = re.compile(r"(?i)^\s*powershell(?:\.exe)?\b.*?\s-(?:encodedcommand|enc|e|ec)\s+([A-Za-z0-9+/=]+)\s*$")
_HASH_RE = re.compile(r"if\(\$h -ne '([0-9A-F]{64})'\)")


@functools.cache
def runner_source() -> str:
    """The runner's source with LF line ends (the hash covers exactly what is sent)."""
    return RUNNER_PATH.read_text(encoding="utf-8").replace("\r\n", "\n")


def runner_sha256(source: str | None = None) -> str:
    """Upper-case hex SHA-256 of the runner source, as the bootstrap computes it."""
    return hashlib.sha256((runner_source() if source is None else source).encode("utf-8")).hexdigest().upper()


def bootstrap_script(sha256: str) -> str:
    """The PowerShell bootstrap text for a runner with this hash."""
    if not re.fullmatch(r"[0-9A-F]{64}", sha256):
        raise ValueError("runner hash must be 64 upper-case hex digits")
    return _BOOTSTRAP.replace("@@HASH@@", sha256)


def command_line(sha256: str | None = None) -> str:
    """The whole command line: powershell.exe with the encoded bootstrap (well under 8,191 chars)."""
    script = bootstrap_script(sha256 or runner_sha256())
    return _PREFIX + base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def frame_stdin(payload_text: str, source: str | None = None) -> bytes:
    """stdin for one call: runner source, :data:`MARKER`, payload JSON text, UTF-8 encoded."""
    if "\n" in payload_text:
        raise ValueError("the payload must be single-line JSON (the marker contains newlines)")
    return ((runner_source() if source is None else source) + MARKER + payload_text).encode("utf-8")


def parse_command_line(command_line_text: str) -> tuple[str, str] | None:
    """(bootstrap script, expected runner hash) when this is a kmsdeploy bootstrap, else None."""
    m = _ENCODED_RE.match(command_line_text)
    if not m:
        return None
    try:
        script = base64.b64decode(m.group(1), validate=True).decode("utf-16-le")
    except (ValueError, UnicodeDecodeError):
        return None
    h = _HASH_RE.search(script)
    if not h or script != bootstrap_script(h.group(1)):
        return None
    return script, h.group(1)


def split_stdin(data: bytes) -> tuple[str, str] | None:
    """(runner source, payload text) from framed stdin, or None without a marker."""
    text = data.decode("utf-8", errors="strict")
    k = text.find(MARKER)
    if k < 0:
        return None
    return text[:k], text[k + len(MARKER):]
