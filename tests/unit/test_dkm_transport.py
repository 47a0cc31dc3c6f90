"""LDAP transport settings and error mapping (faults injected at the ldap3 boundary)."""
from __future__ import annotations

import socket

import pytest
from ldap3.core import exceptions as lx

from kmsdeploy.errors import AuthenticationError, ProviderError, TimeoutError_, TransportError, UnreachableError
from kmsdeploy.model import Host, Secret
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.ldap import LdapProvider, marker_owner, marker_value
from kmsdeploy.transports.ldap import LdapSettings, LdapTransport

PW = "S3cret-Value-9"


def transport(**kw):
    return LdapTransport(LdapSettings(host="192.0.2.1", port=636, user="u@corp.example", password=Secret(PW),
                                      target="dc1", **kw))


def test_plaintext_needs_opt_in():
    with pytest.raises(TransportError) as e:
        transport(tls="none")
    assert not e.value.transient and "kmsdeploy_ldap_allow_plaintext" in str(e.value)
    transport(tls="none", allow_plaintext=True)  # accepted when opted in
    with pytest.raises(TransportError):
        transport(tls="ssl")


@pytest.mark.parametrize("exc,cls,transient", [
    (lx.LDAPInvalidCredentialsResult(result=49, description="invalidCredentials", message=f"bad {PW}"), AuthenticationError, False),
    (lx.LDAPSocketOpenError("socket connection error while opening: [Errno 111] Connection refused"), UnreachableError, True),
    (lx.LDAPSocketOpenError("socket ssl wrapping error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), TransportError, False),
    (lx.LDAPSocketOpenError("socket ssl wrapping error: certificate {...} doesn't match any name in ['10.0.0.1']"), TransportError, False),
    (lx.LDAPSocketOpenError("socket connection error while opening: timed out"), TimeoutError_, True),
    (lx.LDAPResponseTimeoutError("no response from server"), TimeoutError_, True),
    (socket.timeout("timed out"), TimeoutError_, True),
    (ValueError("unsupported hash type md4"), TransportError, False),
])
def test_error_mapping(exc, cls, transient):
    t = transport()
    mapped = t._map(exc, "bind")
    assert type(mapped) is cls and mapped.transient is transient
    assert PW not in str(mapped) and mapped.target == "dc1"


def test_operation_result_is_provider_error():
    mapped = transport()._map(lx.LDAPInsufficientAccessRightsResult(result=50, description="insufficientAccessRights",
                                                                     message="no"), "modify 'CN=x'")
    assert isinstance(mapped, ProviderError) and "insufficientAccessRights" in str(mapped)


def test_bind_failure_is_mapped_and_secret_free(mocker):
    conn = mocker.MagicMock()
    conn.bind.side_effect = lx.LDAPInvalidCredentialsResult(result=49, description="invalidCredentials", message=PW)
    mocker.patch("ldap3.Connection", return_value=conn)
    with pytest.raises(AuthenticationError) as e:
        transport().open()
    assert PW not in str(e.value) and PW not in repr(e.value.args)


def test_provider_transport_from_host_vars(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    host = Host("dc1", {"ansible_connection": "ldap", "ansible_host": "10.0.0.10", "ansible_user": "u@corp.example",
                        "ansible_password": Secret(PW), "kmsdeploy_ldap_tls": "starttls", "kmsdeploy_ldap_ca_file": "ca.pem",
                        "kmsdeploy_ldap_server_name": "dc1.corp.example"})
    t = LdapProvider().transport(host, RunContext(base_dir=str(tmp_path)))
    s = t.settings
    assert (s.host, s.port, s.tls, s.ca_file, s.server_name) == ("10.0.0.10", 389, "starttls", str(ca), "dc1.corp.example")
    host = Host("dc1", {"ansible_connection": "ldap", "kmsdeploy_ldap_ca_file": "missing.pem"})
    with pytest.raises(TransportError, match="does not exist"):
        LdapProvider().transport(host, RunContext(base_dir=str(tmp_path)))


def test_marker():
    assert marker_owner(marker_value("team-a")) == "team-a"
    assert marker_owner(["managed-by=kmsdeploy;owner=x"]) == "x"
    assert marker_owner("hand made") is None and marker_owner(None) is None


def test_failed_delete_puts_the_protection_back(mocker):
    """A refused delete must not leave the container unprotected (no half-applied state)."""
    import base64
    import json
    import pathlib

    from kmsdeploy.model import Action, Change, Ref, Resource
    from kmsdeploy.providers.base import RunContext
    from kmsdeploy.providers.ldap import LdapProvider
    from kmsdeploy.kinds.ad_acl import explicit_aces, is_protected_from_deletion, parse_sd, rebuild_dacl

    data = json.loads((pathlib.Path(__file__).parent.parent / "data" / "dkm" / "samba_sd_samples.json").read_text())
    protected, _ = rebuild_dacl(base64.b64decode(data["container_default"]), [], exact=False,
                                remove_authenticated_users=False, protect=True)
    dn = "CN=VMMDKM,CN=System,DC=corp,DC=example"
    provider = LdapProvider()
    mocker.patch.object(provider, "read_container", return_value={
        "_owned": True, "_children": 0, "_sddl": "D:", "protect_from_deletion": True})
    mocker.patch.object(provider, "_raw_sd", return_value=protected)
    t = mocker.MagicMock()
    t.delete.side_effect = ProviderError("LDAP delete failed: insufficientAccessRights", target="dc1")
    ref = Ref("dkm_container", "dc1", dn)
    r = Resource(ref, {"dn": dn, "recursive": False}, state="absent")
    [res] = provider.apply(t, Host("dc1", {}), [Change(ref=ref, action=Action.DELETE)], {ref: r},
                           RunContext(owner_id="o"))
    assert not res.ok and "insufficientAccessRights" in res.message
    written = [call.args[1]["nTSecurityDescriptor"][0][1][0] for call in t.modify.call_args_list]
    assert len(written) == 2
    assert not is_protected_from_deletion(explicit_aces(parse_sd(written[0])))  # unprotected to delete
    assert written[1] == protected  # and protected again after the delete failed
