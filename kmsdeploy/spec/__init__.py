"""The spec layer: playbooks and inventories in, validated :class:`~kmsdeploy.model.Specs` out.

Modules: ``yamlpos`` (YAML with positions), ``inventory`` (Ansible-style inventories),
``patterns`` (host patterns), ``template`` (sandboxed Jinja2), ``secrets``
(``{env:}``/``{file:}`` references), ``schemas`` (JSON Schema registry), ``validate``
(human schema errors, cross-resource checks) and ``load`` (the pipeline front:
:func:`kmsdeploy.spec.load.load_specs`). See docs/specs.md.
"""
