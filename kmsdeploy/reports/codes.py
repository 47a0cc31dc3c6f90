"""Names for the numbers a 12290 event carries, from the reference only.

- License status (12290's "license status" field): the ``LicenseStatus`` enum of
  ``SoftwareLicensingProduct`` (reference A.2, WSD-WMI). That 12290 uses the same enum is
  an inference: the host's cumulative counters (``KeyManagementService{Unlicensed,
  Licensed,OOBGrace,OOTGrace,NonGenuineGrace,Notification}Requests``, A.2 and F.1) are
  bucketed by exactly these states in this order.
- HRESULTs: reference A.6 (WSD-ERR), 0x0 = success.
- Thresholds and timing: reference A.5.
"""
from __future__ import annotations

from datetime import timedelta

#: reference A.2 (WSD-WMI): SoftwareLicensingProduct.LicenseStatus
LICENSE_STATUS: dict[int, str] = {
    0: "Unlicensed",
    1: "Licensed",
    2: "OOBGrace",
    3: "OOTGrace",
    4: "NonGenuineGrace",
    5: "Notification",
    6: "ExtendedGrace",
}

#: reference A.6 (WSD-ERR unless noted): HRESULT -> (short name, meaning)
HRESULTS: dict[int, tuple[str, str]] = {
    0x00000000: ("S_OK", "Success"),
    0xC004F074: ("KMS_UNAVAILABLE", "No KMS could be contacted (the Key Management Service is unavailable)"),
    0xC004F038: ("COUNT_INSUFFICIENT", "Count insufficient (under 25 for clients, under 5 for servers)"),
    0xC004C008: ("KEY_LIMIT_EXCEEDED", "The KMS host key has exceeded its activation limit"),
    0xC004F039: ("KMS_NOT_ENABLED", "KMS not enabled / did not respond (check TCP 1688)"),
    0xC004F041: ("KMS_HOST_NOT_ACTIVATED", "The KMS host is not activated"),
    0xC004F042: ("PRODUCT_NOT_SUPPORTED", "The contacted KMS cannot activate this product"),
    0xC004F050: ("INVALID_KEY", "Invalid key (typo, beta key, em-dashes)"),
    0xC004F06C: ("TIMESTAMP_INVALID", "Request timestamp invalid (clock skew between client and host)"),
    0x8007232A: ("DNS_SERVER_FAILURE", "DNS server failure"),
    0x8007232B: ("DNS_NAME_DOES_NOT_EXIST", "DNS name does not exist"),
    0x8007251D: ("DNS_NO_RECORDS", "No DNS records (missing _vlmcs SRV)"),
    0x800706BA: ("RPC_UNAVAILABLE", "RPC server unavailable (firewall, or stale SRV records)"),
    0x80070005: ("ACCESS_DENIED", "Access denied (needs elevation)"),
}

#: reference A.5 (WSD-PLAN; WSD-HOST): minimum counts
CLIENT_THRESHOLD = 25
SERVER_THRESHOLD = 5
#: reference A.5: unique CMIDs in the last 30 days, at most 50 kept
COUNT_WINDOW = timedelta(days=30)
COUNT_CAP = 50
#: reference A.5 (WSD-PLAN; WSD-TIMING)
ACTIVATION_VALIDITY = timedelta(days=180)
RENEWAL_INTERVAL = timedelta(days=7)
RETRY_INTERVAL = timedelta(hours=2)


def license_status_name(code: int | None) -> str:
    """``1`` -> ``Licensed``; unknown codes keep their number (``Status 9``)."""
    if code is None:
        return "unknown"
    return LICENSE_STATUS.get(int(code), f"Status {code}")


def hresult_hex(code: int) -> str:
    """Canonical ``0xC004F074`` spelling (unsigned 32-bit, upper-case; success is ``0x0``)."""
    code &= 0xFFFFFFFF
    return "0x0" if code == 0 else f"0x{code:08X}"


def hresult_name(code: int) -> str:
    """Short name of an HRESULT from A.6, else its hex spelling."""
    return HRESULTS.get(code & 0xFFFFFFFF, (hresult_hex(code), ""))[0]


def hresult_meaning(code: int) -> str:
    """Meaning from A.6, else ``not in the reference``."""
    known = HRESULTS.get(code & 0xFFFFFFFF)
    return known[1] if known else "not in the reference (see Microsoft's activation error codes)"


def family_of(min_count: int | None) -> str:
    """``client`` or ``server`` from the N-policy (minimum count) the request carried.

    A.5: client OSes need 25, Windows Server and volume Office need 5, so a request's own
    minimum count says which threshold applies. Office products fall in ``server`` here
    (same threshold); name them with a product catalog.
    """
    if min_count is None:
        return "unknown"
    return "client" if int(min_count) >= CLIENT_THRESHOLD else "server"
