"""Windows error codes met while managing KMS hosts, and what they mean.

Codes and meanings follow reference A.6 (WSD-ERR, SLMGR-SRC). Codes starting with
``KMSDEPLOY_`` are the runner's own (a check made before calling Windows, e.g. the
"host settings need a KMS machine" rule slmgr applies, A.1) — they are not Windows codes.
Pure data and a pure lookup; no I/O.
"""
from __future__ import annotations

#: HRESULT (upper-case hex, 0x prefix) -> meaning (reference A.6)
WINDOWS_ERRORS: dict[str, str] = {
    "0xC004F074": "No Key Management Service (KMS) could be contacted (the KMS is unavailable); check the client's 12288 events",
    "0xC004F038": "The KMS count is insufficient (under 25 for clients, under 5 for servers)",
    "0xC004C008": "The KMS host key has exceeded its activation limit",
    "0xC004F039": "The KMS is not enabled or did not respond (check TCP 1688)",
    "0xC004F041": "The KMS host is not activated",
    "0xC004F042": "The contacted KMS cannot activate this product",
    "0xC004F050": "Invalid product key (typo, beta key, em-dashes)",
    "0xC004F06C": "The request timestamp is invalid (clock skew)",
    "0x8007232A": "DNS server failure",
    "0x8007232B": "DNS name does not exist",
    "0x8007251D": "No DNS records found (missing _vlmcs SRV record)",
    "0x800706BA": "The RPC server is unavailable (firewall, or stale SRV records)",
    "0x80070005": "Access denied (the operation needs elevation)",
    # UNCONFIRMED: the reference gives the 15-43,200 range for SetVLActivationInterval /
    # SetVLRenewalInterval (A.2) but not the code Windows returns outside it. We assume the
    # generic E_INVALIDARG; the lab model answers with it, real hosts may differ.
    "0x80070057": "The parameter is incorrect (value out of range)",
    # Win32 DNS server errors as HRESULTs (not in the reference; standard winerror.h values)
    "0x80072581": "The DNS zone does not exist on this server (DNS_ERROR_ZONE_DOES_NOT_EXIST)",
    "0x800725EF": "The DNS record already exists (DNS_ERROR_RECORD_ALREADY_EXISTS)",
}

#: the runner's own codes (checks it makes before calling Windows)
RUNNER_ERRORS: dict[str, str] = {
    "KMSDEPLOY_NOT_KMS_HOST": "Host settings can only be set on a KMS machine (install a KMS host key first; slmgr gives the same warning, reference A.1)",
    "KMSDEPLOY_NO_KMS_PRODUCT": "No licensing product with a KMS host key (VOLUME_KMS channel) is installed",
    "KMSDEPLOY_PAYLOAD": "The runner could not read its payload (malformed JSON or over the ~2 MB ConvertFrom-Json limit of Windows PowerShell 5.1)",
    "KMSDEPLOY_UNKNOWN_OP": "The runner does not know this operation (runner/payload version mismatch)",
    "KMSDEPLOY_SKIPPED": "Not run because an earlier operation in the same batch failed",
    "KMSDEPLOY_NOT_FOUND": "The object to change does not exist",
    "KMSDEPLOY_EXISTS": "The object to create already exists",
    "KMSDEPLOY_NO_MODULE": "A PowerShell module the operation needs is not installed on the target",
    "KMSDEPLOY_RUNNER_HASH": "The runner received over stdin does not match the hash on the command line",
    "KMSDEPLOY_MSI": "msiexec failed",
    "KMSDEPLOY_ERROR": "Unclassified PowerShell error",
}


def normalize_code(code: object) -> str:
    """Canonical spelling of an error code: ``0x`` + 8 upper-case hex digits for numbers
    (negative 32-bit HRESULTs as PowerShell prints them are folded), text codes unchanged."""
    if isinstance(code, bool):
        return str(code)
    if isinstance(code, int):
        return "0x%08X" % (code & 0xFFFFFFFF)
    text = str(code).strip()
    if text.lower().startswith("0x"):
        try:
            return "0x%08X" % (int(text, 16) & 0xFFFFFFFF)
        except ValueError:
            return text
    if text.lstrip("-").isdigit():
        return "0x%08X" % (int(text) & 0xFFFFFFFF)
    return text


def describe(code: object) -> str:
    """``CODE: meaning`` for a Windows or runner error code (meaning omitted when unknown)."""
    norm = normalize_code(code)
    meaning = WINDOWS_ERRORS.get(norm) or RUNNER_ERRORS.get(norm)
    return f"{norm}: {meaning}" if meaning else norm
