"""WinRM host variables -> settings (secure defaults, opt-ins) and library error mapping."""
from __future__ import annotations

import pytest
import requests
import urllib3.exceptions
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError, WSManFaultError

from kmsdeploy.errors import AuthenticationError, TimeoutError_, TransportError, UnreachableError
from kmsdeploy.model import Secret
from kmsdeploy.transports.winrm import classify, settings_from_vars

BASE = {"ansible_user": "Administrator", "ansible_password": Secret("S3cret-pw"), "ansible_host": "10.0.0.5"}


def test_defaults_are_https_ntlm_validated():
    s = settings_from_vars("kms01", BASE)
    assert s.endpoint == "https://10.0.0.5:5986/wsman"
    assert (s.auth, s.server_cert_validation, s.message_encryption) == ("ntlm", "validate", "auto")
    assert (s.operation_timeout, s.read_timeout) == (20, 30)
    assert s.encrypted


def test_http_needs_opt_in_and_is_refused_before_connecting():
    with pytest.raises(TransportError) as e:
        settings_from_vars("kms01", {**BASE, "ansible_winrm_scheme": "http"})
    assert "kmsdeploy_winrm_allow_http" in str(e.value) and not e.value.transient
    s = settings_from_vars("kms01", {**BASE, "ansible_winrm_scheme": "http", "kmsdeploy_winrm_allow_http": "yes"})
    assert s.endpoint == "http://10.0.0.5:5985/wsman" and s.encrypted


@pytest.mark.parametrize("extra", [{"ansible_winrm_transport": "basic"}, {"ansible_winrm_message_encryption": "never"}])
def test_unencrypted_http_needs_a_second_opt_in(extra):
    v = {**BASE, "ansible_winrm_scheme": "http", "kmsdeploy_winrm_allow_http": True, **extra}
    with pytest.raises(TransportError, match="kmsdeploy_winrm_allow_unencrypted"):
        settings_from_vars("kms01", v)
    assert not settings_from_vars("kms01", {**v, "kmsdeploy_winrm_allow_unencrypted": True}).encrypted


def test_every_problem_is_listed_and_password_never_shown(tmp_path):
    with pytest.raises(TransportError) as e:
        settings_from_vars("kms01", {**BASE, "ansible_winrm_transport": "magic", "ansible_port": "x",
                                     "ansible_winrm_ca_trust_path": "nope.pem",
                                     "ansible_winrm_read_timeout_sec": 5})
    text = str(e.value)
    for needle in ("ansible_winrm_transport", "ansible_port", "nope.pem", "read_timeout"):
        assert needle in text
    assert "S3cret-pw" not in text


def test_ignore_validation_warns(caplog):
    settings_from_vars("kms01", {**BASE, "ansible_winrm_server_cert_validation": "ignore"})
    assert "DISABLED" in caplog.text


S = settings_from_vars("kms01", BASE)


def conn_error(reason):
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/wsman", reason))


@pytest.mark.parametrize("exc,kind,transient,delivered,words", [
    (InvalidCredentialsError("x"), AuthenticationError, False, False, "authentication failed"),
    (conn_error(urllib3.exceptions.NewConnectionError(None, "Connection refused")), UnreachableError, True, False,
     "unreachable"),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("aborted", ConnectionResetError())),
     TransportError, True, None, "dropped"),
    (requests.exceptions.ReadTimeout("x"), TimeoutError_, True, None, "read timeout"),
    (requests.exceptions.ConnectTimeout("x"), TimeoutError_, True, False, "no connection"),
    (requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
                                  "certificate in certificate chain"), TransportError, False, False,
     "verification failed"),
    (WSManFaultError(500, "m", "r", "busy", "s:Receiver", "w:InternalError"), TransportError, True, False, "busy"),
    (WSManFaultError(500, "m", "r", "gone", "s:Sender", "w:InvalidSelectors", 2150858843), TransportError, False,
     False, "no longer exists"),
    (WinRMTransportError("http", 503, ""), TransportError, True, False, "HTTP 503"),
    (WinRMTransportError("http", 403, ""), TransportError, False, False, "HTTP 403"),
])
def test_classify(exc, kind, transient, delivered, words):
    error, was_delivered = classify(exc, S, "Command")
    assert type(error) is kind or (kind is TransportError and isinstance(error, TransportError))
    assert error.transient is transient and was_delivered is delivered
    assert words in str(error) and "kms01" in str(error) and "S3cret-pw" not in str(error)
