"""Templating: native types, strict undefined, lazy vars, sandbox, secrets."""
from __future__ import annotations

import pytest

from kmsdeploy.model import Secret, SecretRef
from kmsdeploy.spec.template import Renderer, Scope, TemplateError, contains_template, is_template


@pytest.fixture
def scope():
    r = Renderer()
    host = {
        "kms_port": 1688,
        "site_domain": "berlin.corp.example",
        "fqdn": "{{ inventory_hostname }}.{{ site_domain }}",
        "alias": "{{ fqdn }}",
        "loop_a": "{{ loop_b }}",
        "loop_b": "{{ loop_a }}",
        "targets": [{"target": "{{ fqdn }}", "port": "{{ kms_port }}"}],
        "evil": "{{ '{{' }} kms_port }}",
        "password": SecretRef("env", "X"),
        "resolved": Secret("hunter2", "env:Y"),
        "uses_missing": "{{ nope }}",
    }
    play = {"kms_port": 1689}  # play vars override host vars
    return r, Scope(r, [host, play], {"inventory_hostname": "ber-kms01", "site": "branch-berlin"})


def render(scope, s):
    r, sc = scope
    return r.render_string(s, sc)


def test_detection():
    assert is_template("{{ x }}") and is_template("{% if x %}y{% endif %}") and is_template("a {# c #}")
    assert not is_template("plain") and not is_template(3)
    assert contains_template({"a": [1, {"b": "{{ c }}"}]}) and not contains_template({"a": ["x"]})


def test_native_types(scope):
    assert render(scope, "{{ kms_port }}") == 1689
    assert render(scope, "{{ kms_port + 1 }}") == 1690
    assert render(scope, "{{ [1, 2] }}") == [1, 2]
    assert render(scope, "{{ targets }}") == [{"target": "ber-kms01.berlin.corp.example", "port": 1689}]
    assert render(scope, "port {{ kms_port }}") == "port 1689"
    assert render(scope, "{{ kms_port }}{{ kms_port }}") == "16891689"
    assert render(scope, " {{ kms_port }}") == " 1689"
    assert render(scope, "no template") == "no template"


def test_lazy_vars_and_magic(scope):
    assert render(scope, "{{ alias }}") == "ber-kms01.berlin.corp.example"
    assert render(scope, "{{ site }}") == "branch-berlin"


def test_rendered_values_are_not_rendered_again(scope):
    # 'evil' renders to the text "{{ kms_port }}" which must stay text
    assert render(scope, "{{ evil }}") == "{{ kms_port }}"
    assert render(scope, "x-{{ evil }}") == "x-{{ kms_port }}"


def test_strict_undefined_names_the_variable(scope):
    with pytest.raises(TemplateError, match="undefined variable 'missing_var'"):
        render(scope, "{{ missing_var }}")
    with pytest.raises(TemplateError, match="undefined variable 'missing_var'"):
        render(scope, "a {{ missing_var }} b")
    with pytest.raises(TemplateError, match="in variable 'uses_missing': undefined variable 'nope'"):
        render(scope, "{{ uses_missing }}")


def test_recursion_is_detected(scope):
    with pytest.raises(TemplateError, match="refers to itself"):
        render(scope, "{{ loop_a }}")


def test_depth_limit():
    r = Renderer()
    layer = {f"v{i}": "{{ v%d }}" % (i + 1) for i in range(30)}
    layer["v30"] = "end"
    with pytest.raises(TemplateError, match="more than 20 levels"):
        r.render_string("{{ v0 }}", Scope(r, [layer], {}))


@pytest.mark.parametrize("src", [
    "{{ ''.__class__.__mro__ }}",
    "{{ kms_port.__class__ }}",
    "{{ targets.append(1) }}",
    "{{ targets.__getitem__ }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox(scope, src):
    with pytest.raises(TemplateError, match="unsafe|undefined"):
        render(scope, src)


def test_syntax_errors(scope):
    with pytest.raises(TemplateError, match="template syntax error") as e:
        render(scope, "{{ kms_port ")
    assert e.value.lineno == 1
    errors = list(Renderer().check_syntax({"a": ["ok {{ x }}", "bad {% if %}"]}))
    assert [p for p, _ in errors] == [["a", 1]]


def test_secrets_keep_native_and_refuse_interpolation(scope):
    assert render(scope, "{{ password }}") == SecretRef("env", "X")
    assert isinstance(render(scope, "{{ resolved }}"), Secret)
    with pytest.raises(TemplateError, match="cannot be interpolated"):
        render(scope, "pw={{ resolved }}")
    with pytest.raises(TemplateError) as e:
        render(scope, "pw={{ resolved }}")
    assert "hunter2" not in e.value.message


def test_filter_errors_are_template_errors(scope):
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render(scope, "{{ 1 / 0 }}")


def test_render_value_keeps_structure(scope):
    r, sc = scope
    out = r.render_value({"a": ["{{ kms_port }}", "x"], "b": {"c": "{{ site }}"}}, sc)
    assert out == {"a": [1689, "x"], "b": {"c": "branch-berlin"}}
    errs = []
    r.render_value({"a": "{{ nope }}"}, sc, on_error=lambda p, e: errs.append((p, e.message)))
    assert errs == [(["a"], "undefined variable 'nope'")]
