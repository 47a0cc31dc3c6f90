"""Host variables are lazy, as in Ansible: a template is rendered only when something uses it.

The typical estate: ``ansible_password: "{{ vault_winrm_password }}"`` where the vault
variable lives in a file this run does not read, plus variables no resource uses. Such an
inventory validates (a warning for the connection variable), and is an error only where a
resource or a connection really needs the value. An unused template is never rendered.
"""
from __future__ import annotations

import pytest

from kmsdeploy.errors import SpecError
from kmsdeploy.spec import template
from kmsdeploy.spec.load import load_specs

HOSTS = """\
[kms_hosts]
kms1 ansible_host=198.18.0.30
[kms_hosts:vars]
ansible_connection=winrm
ansible_user=admin
ansible_password="{{ vault_winrm_password }}"
unused_undefined="{{ nothing_defines_this }}"
unused_hostile="{{ lookup('pipe', 'touch PWNED') }}"
site_label="{{ inventory_hostname | upper }}"
"""

PLAY = """\
- name: KMS port
  hosts: kms_hosts
  resources:
    - kind: firewall_rule
      name: KMS-In
      display_name: "{DISPLAY}"
      local_ports: [1688]
"""


@pytest.fixture
def estate(tmp_path):
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts").write_text(HOSTS)

    def book(display: str):
        path = tmp_path / "site.yml"
        path.write_text(PLAY.replace("{DISPLAY}", display))
        return [str(path)], [str(inv)]
    return book


def test_validate_accepts_an_inventory_whose_vault_variable_lives_elsewhere(estate, tmp_path):
    books, inv = estate("KMS for {{ site_label }}")
    specs = load_specs(books, inv, resolve_secrets=False)
    (fw,) = specs.resources
    assert fw.desired["display_name"] == "KMS for KMS1"  # a used variable is rendered
    assert any("ansible_password" in w and "vault_winrm_password" in w for w in specs.warnings)
    assert not any("nothing_defines_this" in w or "unused_hostile" in w for w in specs.warnings)
    assert not (tmp_path / "PWNED").exists()


def test_the_connection_needs_the_password_so_a_run_that_connects_fails_there(estate):
    books, inv = estate("KMS")
    with pytest.raises(SpecError) as err:
        load_specs(books, inv, resolve_secrets=True)
    (diag,) = err.value.diagnostics
    assert str(diag).startswith(f"{inv[0]}/hosts:2:1: host kms1: variable 'ansible_password'")
    assert "undefined variable 'vault_winrm_password'" in str(diag)


def test_a_resource_that_uses_an_undefined_variable_is_a_located_error(estate):
    books, inv = estate("KMS {{ unused_undefined }}")
    with pytest.raises(SpecError) as err:
        load_specs(books, inv, resolve_secrets=False)
    text = str(err.value)
    assert f"{books[0]}:6:" in text and "nothing_defines_this" in text


def test_unused_templates_are_never_rendered(estate, mocker):
    books, inv = estate("KMS")
    seen: list[str] = []
    real = template.Renderer.render_string

    def spy(self, source, scope):
        seen.append(source)
        return real(self, source, scope)

    mocker.patch.object(template.Renderer, "render_string", spy)
    load_specs(books, inv, resolve_secrets=False)
    assert "{{ vault_winrm_password }}" in seen  # connection variables are rendered eagerly
    assert not any("lookup" in s or "nothing_defines_this" in s or "upper" in s for s in seen), seen
