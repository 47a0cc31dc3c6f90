"""Lint the PowerShell runner the way a linter would (no PowerShell runs here).

- runner.ps1 parses with tree-sitter-powershell without ERROR/MISSING nodes;
- every command it calls is one of its own functions or on ALLOWED (each entry cites the
  reference section of windows-kms-dns-dkm-scom.md, or the PowerShell documentation for
  language plumbing), and every -Parameter is on that command's list;
- no Invoke-Expression, [scriptblock]::Create, `& $variable`, Add-Type or iex;
- every operation of schemas/runner-payload.json has exactly one branch in the runner's
  dispatch switch and one lab-model handler, and nothing else does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

from kmsdeploy.lab.model import HANDLERS
from kmsdeploy.providers.windows import bootstrap

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "kmsdeploy" / "providers" / "windows" / "runner.ps1"
SCHEMA = ROOT / "schemas" / "runner-payload.json"

PS_DOCS = "PowerShell 5.1 docs (Microsoft.PowerShell.*), language plumbing"
#: command -> (allowed parameters, source)
ALLOWED: dict[str, tuple[frozenset[str], str]] = {
    "Set-StrictMode": (frozenset({"-Version"}), PS_DOCS),
    "New-Object": (frozenset({"-ComObject", "-TypeName", "-ArgumentList"}),
                   PS_DOCS + "; -ComObject AgentConfigManager.MgmtSvcCfg: E.2"),
    # preflight (docs/preflight.md): execution policy scopes and the WinRM limits under WSMan:\localhost
    "Get-ExecutionPolicy": (frozenset({"-List"}), PS_DOCS + " (about_Execution_Policies: scopes and precedence)"),
    "Get-Item": (frozenset({"-LiteralPath"}), PS_DOCS + " (WSMan provider: MaxEnvelopeSizekb, MaxTimeoutms, Shell\\MaxMemoryPerShellMB)"),
    "ForEach-Object": (frozenset(), PS_DOCS),
    "Where-Object": (frozenset(), PS_DOCS),
    "ConvertFrom-Json": (frozenset({"-InputObject"}), "CONVJSON; ~2 MB limit in 5.1 (DESIGN Lab contract)"),
    "ConvertTo-Json": (frozenset({"-InputObject", "-Depth", "-Compress"}), "CONVJSON, F.7 (always pass -Depth)"),
    "Join-Path": (frozenset(), PS_DOCS),
    "Test-Path": (frozenset({"-LiteralPath"}), PS_DOCS),
    # A: licensing through CIM (A.2), registry (A.3), sppsvc restart (A.1), events (A.4)
    "Get-CimInstance": (frozenset({"-ClassName", "-Filter"}), "A.2 SoftwareLicensingService/Product, F.8"),
    "Invoke-CimMethod": (frozenset({"-InputObject", "-MethodName", "-Arguments"}), "A.2 methods"),
    "Get-ItemProperty": (frozenset({"-LiteralPath", "-Name", "-ErrorAction"}), "A.3 registry values"),
    "New-ItemProperty": (frozenset({"-LiteralPath", "-Name", "-PropertyType", "-Value", "-Force"}), "A.3 DnsDomainPublishList (MULTI_SZ)"),
    "Remove-ItemProperty": (frozenset({"-LiteralPath", "-Name", "-ErrorAction"}), "A.3"),
    "New-Item": (frozenset({"-Path", "-Force"}), "A.3 (kmsdeploy's own restart-pending marker key)"),
    "Restart-Service": (frozenset({"-Name", "-Force"}), "A.1 restart sppsvc after host settings"),
    "Get-WinEvent": (frozenset({"-FilterHashtable", "-MaxEvents", "-ErrorAction", "-LogName", "-FilterXPath", "-Oldest"}),
                     "A.4, F.9, F.10 (-FilterXPath on EventRecordID: the incremental 12290 read)"),
    # C: firewall
    "Get-NetFirewallRule": (frozenset({"-Name", "-Group", "-ErrorAction"}), "C.2, C.3 (match by Name)"),
    "New-NetFirewallRule": (frozenset(), "C.2 (splatted: Name, DisplayName, Group, Enabled, ...)"),
    "Set-NetFirewallRule": (frozenset(), "C.2 (splatted: NewDisplayName, Enabled, Profile, ...)"),
    "Remove-NetFirewallRule": (frozenset(), "C.2"),
    "Get-NetFirewallPortFilter": (frozenset(), "C.2"),
    "Get-NetFirewallAddressFilter": (frozenset(), "C.2, C.3"),
    "Get-NetFirewallApplicationFilter": (frozenset(), "C.3"),
    "Get-NetFirewallServiceFilter": (frozenset(), "C.3"),
    # B: DNS server
    "Get-Module": (frozenset({"-ListAvailable", "-Name"}), "B.2 DnsServer / E.3 OperationsManager presence"),
    "Import-Module": (frozenset({"-Name"}), "E.3 OperationsManager"),
    "Get-DnsServerZone": (frozenset({"-Name", "-ErrorAction"}), "B.2"),
    "Get-DnsServerResourceRecord": (frozenset({"-ZoneName", "-Name", "-RRType", "-ErrorAction"}), "B.2, B.3"),
    "Add-DnsServerResourceRecord": (frozenset({"-Srv", "-DomainName", "-Priority", "-Weight", "-Port", "-A", "-AAAA",
                                               "-CName", "-HostNameAlias", "-Txt", "-DescriptiveText"}), "B.2 (+ splatted ZoneName, Name, TimeToLive)"),
    "Set-DnsServerResourceRecord": (frozenset({"-ZoneName", "-OldInputObject", "-NewInputObject"}), "B.2, B.3"),
    "Remove-DnsServerResourceRecord": (frozenset({"-ZoneName", "-Force"}), "B.2, B.3"),
    # E: SCOM agent
    "Get-Service": (frozenset({"-Name", "-ErrorAction"}), "E.2 (HealthService present = agent installed); A.1 sppsvc state"),
    "Start-Process": (frozenset({"-FilePath", "-ArgumentList", "-Wait", "-PassThru", "-WindowStyle"}), "E.1 msiexec"),
    "New-SCOMManagementGroupConnection": (frozenset({"-ComputerName"}), "E.3"),
    "Get-SCOMAgent": (frozenset({"-DNSHostName"}), "E.3"),
    "Get-SCOMManagementServer": (frozenset({"-Name"}), "E.3"),
    "Set-SCOMParentManagementServer": (frozenset({"-Agent", "-PrimaryServer", "-FailoverServer"}), "E.3 one change per call"),
}
FORBIDDEN_COMMANDS = {"invoke-expression", "iex", "add-type", "invoke-command", "start-job", "new-pssession"}


@pytest.fixture(scope="module")
def tree():
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    src = RUNNER.read_bytes()
    return src, parser.parse(src)


def walk(node):
    yield node
    for c in node.children:
        yield from walk(c)


def text(src: bytes, node) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8")


def own_functions(src, root) -> set[str]:
    out = set()
    for n in walk(root):
        if n.type == "function_statement":
            for c in n.children:
                if c.type == "function_name":
                    out.add(text(src, c).lower())
    return out


def test_parses_without_errors(tree):
    src, t = tree
    bad = [(n.start_point, text(src, n)[:80]) for n in walk(t.root_node) if n.type == "ERROR" or n.is_missing]
    assert not bad, f"tree-sitter errors in runner.ps1: {bad}"


def test_every_command_and_parameter_is_allowed(tree):
    src, t = tree
    own = own_functions(src, t.root_node)
    assert "invoke-op" in own and "read-licensing" in own
    allowed = {k.lower(): (v[0], k) for k, v in ALLOWED.items()}
    problems = []
    used = set()
    for n in walk(t.root_node):
        if n.type != "command":
            continue
        name_nodes = [c for c in n.children if c.type == "command_name"]
        if not name_nodes:
            problems.append(f"line {n.start_point[0] + 1}: command without a literal name: {text(src, n)[:60]}")
            continue
        name = text(src, name_nodes[0])
        key = name.lower()
        if key in own:
            continue
        if key not in allowed:
            problems.append(f"line {n.start_point[0] + 1}: {name} is not on the allow-list")
            continue
        used.add(allowed[key][1])
        params = {text(src, p) for c in n.children if c.type == "command_elements"
                  for p in c.children if p.type == "command_parameter"}
        extra = {p for p in params if p.lower() not in {a.lower() for a in allowed[key][0]}}
        if extra:
            problems.append(f"line {n.start_point[0] + 1}: {name} uses parameters not on its list: {sorted(extra)}")
    assert not problems, "\n".join(problems)
    # the allow-list stays honest: nothing on it that the runner no longer uses
    assert set(ALLOWED) == used, f"unused allow-list entries: {sorted(set(ALLOWED) - used)}"


def test_no_dynamic_code(tree):
    src, t = tree
    code = [line for line in src.decode("utf-8").splitlines() if not line.lstrip().startswith("#")]
    lowered = "\n".join(code).lower()
    assert "invoke-expression" not in lowered
    assert "[scriptblock]::create" not in lowered
    assert "add-type" not in lowered
    for n in walk(t.root_node):
        if n.type == "command_name" and text(src, n).lower() in FORBIDDEN_COMMANDS:
            pytest.fail(f"forbidden command {text(src, n)} at line {n.start_point[0] + 1}")
        if n.type == "command" and any(c.type == "command_invokation_operator" for c in n.children):
            # `& $variable` / `. $variable`: calling something whose name is data
            pytest.fail(f"call operator at line {n.start_point[0] + 1}: {text(src, n)[:60]}")
        if n.type == "type_literal" and "scriptblock" in text(src, n).lower():
            pytest.fail(f"[scriptblock] at line {n.start_point[0] + 1}")


def dispatch_branches(src, root) -> list[str]:
    """String conditions of the switch inside function Invoke-Op."""
    for n in walk(root):
        if n.type == "function_statement" and any(
                c.type == "function_name" and text(src, c) == "Invoke-Op" for c in n.children):
            out = []
            for m in walk(n):
                if m.type == "switch_clause_condition":
                    out.append(text(src, m).strip("'\""))
            return out
    raise AssertionError("no Invoke-Op function in runner.ps1")


def test_operations_pair_schema_runner_and_model(tree):
    src, t = tree
    schema = json.loads(SCHEMA.read_text())
    ops = set(schema["$defs"]["ops"])
    refs = {o["$ref"].rsplit("/", 1)[1] for o in schema["$defs"]["op"]["oneOf"]}
    assert refs == ops
    for name, d in schema["$defs"]["ops"].items():
        assert d["properties"]["op"]["const"] == name
    branches = dispatch_branches(src, t.root_node)
    assert branches[-1] == "default"
    runner_ops = branches[:-1]
    assert len(runner_ops) == len(set(runner_ops)), "duplicate runner branches"
    assert set(runner_ops) == ops, (f"schema without runner branch: {sorted(ops - set(runner_ops))}; "
                                    f"runner branch without schema: {sorted(set(runner_ops) - ops)}")
    assert set(HANDLERS) == ops, (f"schema without model handler: {sorted(ops - set(HANDLERS))}; "
                                  f"model handler without schema: {sorted(set(HANDLERS) - ops)}")


def test_licensing_settings_pair_schema_and_runner(tree):
    src, _ = tree
    schema = json.loads(SCHEMA.read_text())
    settings = schema["$defs"]["ops"]["licensing.set"]["properties"]["args"]["properties"]["setting"]["enum"]
    body = src.decode()
    for s in settings:
        assert f"'{s}' {{ Invoke-Spp $svc" in body, f"runner has no branch for setting {s}"


def test_marker_and_bootstrap():
    source = bootstrap.runner_source()
    assert bootstrap.MARKER not in source
    cmd = bootstrap.command_line()
    assert len(cmd) < 3000 < bootstrap.COMMAND_LINE_LIMIT  # small, whatever the payload size
    script, sha = bootstrap.parse_command_line(cmd)
    assert sha == bootstrap.runner_sha256()
    assert "[Console]::InputEncoding" in script and "ReadToEnd()" in script
    # the bootstrap is the one place that turns text into code, and only the hashed runner
    assert "Invoke-Expression" not in script


def test_bootstrap_parses(tree):
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    script = bootstrap.bootstrap_script(bootstrap.runner_sha256()).encode()
    t = parser.parse(script)
    assert not t.root_node.has_error


def function_text(src: bytes, root, name: str) -> str:
    for n in walk(root):
        if n.type == "function_statement" and any(
                c.type == "function_name" and text(src, c) == name for c in n.children):
            return text(src, n)
    raise AssertionError(f"no function {name} in runner.ps1")


def test_msi_path_is_quoted_only_by_the_checked_helper(tree):
    """msiexec gets ONE command line (Start-Process -ArgumentList): a path with a double quote
    would end the quoting and add arguments, so every quoted path goes through the helper."""
    src, t = tree
    helper = function_text(src, t.root_node, "Get-QuotedMsiPath")
    assert "Contains('\"')" in helper and "Stop-Op" in helper
    body = src.decode("utf-8").replace(helper, "")
    assert "('\"' +" not in body  # no other place builds a quoted value by concatenation
    for fn in ("Install-ScomAgent", "Uninstall-ScomAgent"):
        assert "Get-QuotedMsiPath" in function_text(src, t.root_node, fn), fn
