"""WS-Management / WinRS SOAP messages for the lab endpoint: parse requests, build replies.

Pure functions only (no sockets, no state). The shapes follow
``reference/winrm-protocol.md`` ("Namespaces and actions", "Details a server must get
right") and what pywinrm 0.5 sends and reads; ``tests/data/wsman/`` holds captured
pywinrm requests that the unit tests parse.

Also here: the MS-WSMV 2.2.9.1.1 framing of NTLM-encrypted bodies
(``multipart/encrypted``; reference "NTLM with pyspnego"), as pure split/join
functions; the cryptography itself lives in :mod:`kmsdeploy.lab.ntlm_auth`.
"""
from __future__ import annotations

import base64
import binascii
import re
import struct
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "Delete",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command": "Command",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send": "Send",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive": "Receive",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal": "Signal",
}
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
COMMAND_STATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/"

#: WSManFault codes (reference "Details a server must get right")
FAULT_TIMED_OUT = 2150858793
FAULT_SHELL_NOT_FOUND = 2150858843

#: Windows' default ``MaxEnvelopeSizekb`` is 500 (server side); pywinrm asks for replies
#: of at most 153,600 bytes (``w:MaxEnvelopeSize``).
SERVER_MAX_ENVELOPE = 500 * 1024
#: output bytes per Receive reply (both streams together), base64 + XML stays < 153,600
RECEIVE_CHUNK = 64 * 1024

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
_BOUNDARY = b"--Encrypted Boundary"


class WsmanParseError(ValueError):
    """The request is not a WS-Man message this endpoint understands."""


@dataclass
class WsmanRequest:
    """One parsed WS-Man request; fields not used by an action stay at their defaults."""

    action: str  # full action URI
    message_id: str
    resource_uri: str = ""
    shell_id: str | None = None
    operation_timeout: float = 60.0  # seconds (w:OperationTimeout)
    max_envelope_size: int = 153600  # bytes the client accepts in a reply
    options: dict[str, str] = field(default_factory=dict)  # w:OptionSet/w:Option
    # Create
    input_streams: str = ""
    output_streams: str = ""
    working_directory: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    # Command / Send / Receive / Signal
    command: str = ""
    arguments: list[str] = field(default_factory=list)
    command_id: str | None = None
    stream_name: str | None = None
    end: bool = False
    data: bytes = b""
    desired_streams: str = ""
    signal_code: str = ""

    @property
    def name(self) -> str:
        """Short action name (Create, Command, Send, Receive, Signal, Delete) or the URI."""
        return ACTIONS.get(self.action, self.action)

    @property
    def codepage(self) -> int:
        """WINRS_CODEPAGE of a Create (437 when absent, as on Windows)."""
        try:
            return int(self.options.get("WINRS_CODEPAGE", "437"))
        except ValueError:
            return 437

    @property
    def command_line(self) -> str:
        """Command plus arguments joined by one space, as cmd.exe receives it."""
        return " ".join([self.command, *self.arguments]) if self.arguments else self.command


_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> float:
    """Seconds of an xs:duration such as ``PT20S``, ``PT0.5S`` or ``P1DT2H`` (no years/months)."""
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise WsmanParseError(f"unsupported duration {text!r}")
    return (float(m["d"] or 0) * 86400 + float(m["h"] or 0) * 3600
            + float(m["m"] or 0) * 60 + float(m["s"] or 0))


def _q(prefix: str, local: str) -> str:
    return f"{{{NS[prefix]}}}{local}"


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def parse_request(body: bytes) -> WsmanRequest:
    """Parse one SOAP envelope (already decrypted) into a :class:`WsmanRequest`.

    Raises :class:`WsmanParseError` for anything that is not a WS-Man shell request.
    """
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise WsmanParseError(f"not XML: {e}") from None
    if root.tag != _q("s", "Envelope"):
        raise WsmanParseError("not a SOAP 1.2 envelope")
    header = root.find("s:Header", NS)
    soap_body = root.find("s:Body", NS)
    if header is None:
        raise WsmanParseError("SOAP header missing")
    action = _text(header.find("a:Action", NS))
    message_id = _text(header.find("a:MessageID", NS))
    if not action or not message_id:
        raise WsmanParseError("a:Action or a:MessageID missing")
    req = WsmanRequest(action=action, message_id=message_id)
    req.resource_uri = _text(header.find("w:ResourceURI", NS))
    timeout = header.find("w:OperationTimeout", NS)
    if timeout is not None and _text(timeout):
        req.operation_timeout = parse_duration(_text(timeout))
    size = header.find("w:MaxEnvelopeSize", NS)
    if size is not None and _text(size).isdigit():
        req.max_envelope_size = int(_text(size))
    for sel in header.findall("w:SelectorSet/w:Selector", NS):
        if sel.get("Name") == "ShellId":
            req.shell_id = _text(sel)
    for opt in header.findall("w:OptionSet/w:Option", NS):
        if opt.get("Name"):
            req.options[opt.get("Name")] = _text(opt)
    if soap_body is None:
        soap_body = ET.Element(_q("s", "Body"))
    name = req.name
    if name == "Create":
        shell = soap_body.find("rsp:Shell", NS)
        if shell is None:
            raise WsmanParseError("Create without rsp:Shell")
        req.input_streams = _text(shell.find("rsp:InputStreams", NS))
        req.output_streams = _text(shell.find("rsp:OutputStreams", NS))
        wd = shell.find("rsp:WorkingDirectory", NS)
        req.working_directory = _text(wd) if wd is not None else None
        for var in shell.findall("rsp:Environment/rsp:Variable", NS):
            req.environment[var.get("Name", "")] = var.text or ""
    elif name == "Command":
        line = soap_body.find("rsp:CommandLine", NS)
        if line is None:
            raise WsmanParseError("Command without rsp:CommandLine")
        cmd = line.find("rsp:Command", NS)
        # the command text is taken verbatim (no strip): spaces are part of the line
        req.command = (cmd.text or "") if cmd is not None else ""
        req.arguments = [a.text or "" for a in line.findall("rsp:Arguments", NS)]
        req.command_id = line.get("CommandId")
    elif name == "Send":
        stream = soap_body.find("rsp:Send/rsp:Stream", NS)
        if stream is None:
            raise WsmanParseError("Send without rsp:Stream")
        req.command_id = stream.get("CommandId")
        req.stream_name = stream.get("Name")
        req.end = (stream.get("End") or "").lower() == "true"
        req.data = _b64(stream.text or "")
    elif name == "Receive":
        desired = soap_body.find("rsp:Receive/rsp:DesiredStream", NS)
        if desired is None:
            raise WsmanParseError("Receive without rsp:DesiredStream")
        req.command_id = desired.get("CommandId")
        req.desired_streams = _text(desired)
    elif name == "Signal":
        sig = soap_body.find("rsp:Signal", NS)
        if sig is None:
            raise WsmanParseError("Signal without rsp:Signal")
        req.command_id = sig.get("CommandId")
        req.signal_code = _text(sig.find("rsp:Code", NS))
    return req


def _b64(text: str) -> bytes:
    text = text.strip()
    # pywinrm 0.5 hands xmltodict the bytes of b64encode(); xmltodict writes them as text,
    # so accept both "QUJD" and a stray "b'QUJD'" rendering defensively.
    if text.startswith("b'") and text.endswith("'"):
        text = text[2:-1]
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise WsmanParseError(f"stdin is not base64: {e}") from None


# --------------------------------------------------------------------------- replies

def _envelope(action: str, relates_to: str, body: str, extra_header: str = "") -> bytes:
    xml = (
        '<s:Envelope xml:lang="en-US"'
        f' xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:x="{NS["x"]}"'
        f' xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}">'
        "<s:Header>"
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"{extra_header}"
        "</s:Header>"
        f"<s:Body>{body}</s:Body>"
        "</s:Envelope>"
    )
    return xml.encode("utf-8")


def _response_action(req: WsmanRequest) -> str:
    return req.action + "Response"


def create_response(req: WsmanRequest, shell_id: str, address: str, owner: str, client_ip: str) -> bytes:
    """Reply to Create: ``x:ResourceCreated`` with the ShellId selector, then ``rsp:Shell``."""
    sid = escape(shell_id)
    body = (
        "<x:ResourceCreated>"
        f"<a:Address>{escape(address)}</a:Address>"
        "<a:ReferenceParameters>"
        f"<w:ResourceURI>{SHELL_URI}</w:ResourceURI>"
        f'<w:SelectorSet><w:Selector Name="ShellId">{sid}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters>"
        "</x:ResourceCreated>"
        f'<rsp:Shell xmlns:rsp="{NS["rsp"]}">'
        f"<rsp:ShellId>{sid}</rsp:ShellId>"
        f"<rsp:ResourceUri>{SHELL_URI}</rsp:ResourceUri>"
        f"<rsp:Owner>{escape(owner)}</rsp:Owner>"
        f"<rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>"
        "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
        f"<rsp:InputStreams>{escape(req.input_streams or 'stdin')}</rsp:InputStreams>"
        f"<rsp:OutputStreams>{escape(req.output_streams or 'stdout stderr')}</rsp:OutputStreams>"
        "</rsp:Shell>"
    )
    return _envelope(_response_action(req), req.message_id, body)


def command_response(req: WsmanRequest, command_id: str) -> bytes:
    """Reply to Command with the new CommandId."""
    body = f"<rsp:CommandResponse><rsp:CommandId>{escape(command_id)}</rsp:CommandId></rsp:CommandResponse>"
    return _envelope(_response_action(req), req.message_id, body)


def send_response(req: WsmanRequest) -> bytes:
    """Reply to Send (stdin accepted)."""
    return _envelope(_response_action(req), req.message_id, "<rsp:SendResponse/>")


def receive_response(req: WsmanRequest, command_id: str, stdout: bytes, stderr: bytes,
                     done: bool, exit_code: int | None) -> bytes:
    """Reply to Receive: base64 chunks of stdout/stderr, then the command state.

    ``done`` closes both streams (``End="true"``) and reports ``CommandState/Done`` with
    the exit code; otherwise the state is ``Running``.
    """
    cid = quoteattr(command_id)
    parts = ["<rsp:ReceiveResponse>"]
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        if data:
            parts.append(f'<rsp:Stream Name="{name}" CommandId={cid}>{base64.b64encode(data).decode()}</rsp:Stream>')
    if done:
        parts.append(f'<rsp:Stream Name="stdout" CommandId={cid} End="true"></rsp:Stream>')
        parts.append(f'<rsp:Stream Name="stderr" CommandId={cid} End="true"></rsp:Stream>')
        parts.append(f'<rsp:CommandState CommandId={cid} State="{COMMAND_STATE}Done">'
                     f"<rsp:ExitCode>{int(exit_code or 0)}</rsp:ExitCode></rsp:CommandState>")
    else:
        parts.append(f'<rsp:CommandState CommandId={cid} State="{COMMAND_STATE}Running"></rsp:CommandState>')
    parts.append("</rsp:ReceiveResponse>")
    return _envelope(_response_action(req), req.message_id, "".join(parts))


def signal_response(req: WsmanRequest) -> bytes:
    """Reply to Signal; ``a:RelatesTo`` echoes the request's MessageID (pywinrm asserts it)."""
    return _envelope(_response_action(req), req.message_id, "<rsp:SignalResponse/>")


def delete_response(req: WsmanRequest) -> bytes:
    """Reply to Delete (empty body; RelatesTo echo)."""
    return _envelope(_response_action(req), req.message_id, "")


@dataclass(frozen=True)
class Fault:
    """A SOAP fault: ``code`` s:Sender/s:Receiver, WS-Man ``subcode``, optional WSManFault code."""

    code: str
    subcode: str
    reason: str
    wsman_code: int | None = None
    http_status: int = 500


def timed_out_fault() -> Fault:
    """w:TimedOut (2150858793): a Receive that had nothing to report within OperationTimeout."""
    return Fault("s:Receiver", "w:TimedOut",
                 "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
                 FAULT_TIMED_OUT)


def shell_not_found_fault(shell_id: str | None) -> Fault:
    """2150858843: the ShellId does not name a live shell."""
    return Fault("s:Sender", "w:InvalidSelectors",
                 f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not "
                 "found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer "
                 "exists on the server. Provide the correct ShellId or create a new shell and retry the operation.",
                 FAULT_SHELL_NOT_FOUND)


def internal_error_fault(reason: str = "The WS-Management service is busy; retry the request later.") -> Fault:
    """w:InternalError without a WSManFault code (lab choice, used by fault injection)."""
    return Fault("s:Receiver", "w:InternalError", reason, None)


def fault_response(fault: Fault, relates_to: str = "", machine: str = "localhost") -> bytes:
    """A SOAP fault envelope (action ``.../wsman/fault``)."""
    code_attr = f' Code="{fault.wsman_code}"' if fault.wsman_code is not None else ""
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{fault.code}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        "<s:Detail>"
        f'<f:WSManFault xmlns:f="{NS["f"]}"{code_attr} Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault>"
        "</s:Detail>"
        "</s:Fault>"
    )
    return _envelope(FAULT_ACTION, relates_to or f"uuid:{uuid.UUID(int=0)}", body)


def chunk_output(stdout: bytes, stderr: bytes, budget: int = RECEIVE_CHUNK) -> tuple[bytes, bytes, bytes, bytes]:
    """Take at most ``budget`` bytes (stdout first, then stderr) for one Receive reply.

    Returns ``(stdout_chunk, stderr_chunk, stdout_rest, stderr_rest)``.
    """
    out = stdout[:budget]
    err = stderr[: max(0, budget - len(out))]
    return out, err, stdout[len(out):], stderr[len(err):]


# ------------------------------------------------------------- MS-WSMV 2.2.9.1.1 framing

def is_encrypted(content_type: str) -> bool:
    """True when a Content-Type announces an NTLM/SPNEGO-encrypted WinRM body."""
    ct = content_type.lower()
    return ct.startswith("multipart/encrypted") and ENCRYPTED_PROTOCOL.lower() in ct


def split_encrypted(body: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split an encrypted body into ``(original_length, signature, sealed)`` parts.

    Raises :class:`WsmanParseError` when the framing (boundaries, tabs, length) is off.
    """
    parts = [p for p in body.split(_BOUNDARY + b"\r\n") if p]
    if not parts or len(parts) % 2:
        raise WsmanParseError("encrypted body: unexpected MIME framing")
    out = []
    for i in range(0, len(parts), 2):
        head, payload = parts[i], parts[i + 1]
        m = re.search(rb"Length=(\d+)", head)
        if not m or b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() not in head:
            raise WsmanParseError("encrypted body: missing OriginalContent length")
        if payload.endswith(_BOUNDARY + b"--\r\n"):
            payload = payload[: -len(_BOUNDARY + b"--\r\n")]
        prefix = b"\tContent-Type: application/octet-stream\r\n"
        if not payload.startswith(prefix) or len(payload) < len(prefix) + 4:
            raise WsmanParseError("encrypted body: missing octet-stream part")
        data = payload[len(prefix):]
        (sig_len,) = struct.unpack("<I", data[:4])
        if sig_len != 16 or len(data) < 4 + sig_len:
            raise WsmanParseError(f"encrypted body: bad signature length {sig_len}")
        out.append((int(m.group(1)), data[4:4 + sig_len], data[4 + sig_len:]))
    return out


def frame_encrypted(original_length: int, signature: bytes, sealed: bytes) -> bytes:
    """Build an encrypted body (one part) the way Windows and pywinrm frame it."""
    return (
        _BOUNDARY + b"\r\n"
        b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(original_length).encode() + b"\r\n"
        + _BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<I", len(signature)) + signature + sealed
        + _BOUNDARY + b"--\r\n"
    )
