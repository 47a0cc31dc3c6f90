"""Windows PowerShell 5.1 lint rules over a tree-sitter-powershell parse (no PowerShell runs here).

The runner (kmsdeploy/providers/windows/runner.ps1) runs under Windows PowerShell 5.1
(DESIGN.md "Windows execution"; reference B.2: the DnsServer cmdlets misbehave under 7).
tree-sitter-powershell follows PowerShell 7's grammar, so it happily accepts some 7-only
syntax, and parses the rest into ERROR nodes. :func:`lint` reports both, each with a rule
id, a line and a message a reviewer can act on:

=====================  ======================================================================
rule                   what it rejects (first version that has it)
=====================  ======================================================================
``null-conditional``   ``$a?.b`` / ``${a}?[0]`` member and index access (7.0)
``null-coalescing``    ``$a ?? $b`` (7.0)
``null-assignment``    ``$a ??= $b`` (7.0)
``ternary``            ``$c ? $x : $y`` (7.0)
``pipeline-chain``     ``cmd1 && cmd2`` / ``cmd1 || cmd2`` (7.0)
``parallel``           ``ForEach-Object -Parallel`` (also ``%`` / ``foreach``, abbreviated) (7.0)
``clean-block``        a ``clean { }`` block in a function or script (7.3)
``automatic-variable`` ``$PSStyle`` (7.2), ``$IsWindows``/``$IsLinux``/``$IsMacOS``/``$IsCoreCLR`` (6.0)
``parameter-7``        cmdlet parameters that do not exist in 5.1 (:data:`SEVEN_ONLY_PARAMETERS`)
``parse-error``        any other ERROR / MISSING node
=====================  ======================================================================

How the grammar treats them (tree-sitter-powershell 0.26, checked in tests/unit/test_ps51_lint.py):
``&&``/``||`` are ``pipeline_chain_tail`` nodes, ``-Parallel`` and ``$PSStyle`` parse cleanly,
and ``?.``, ``??``, ``??=``, the ternary and ``clean`` after another named block come out as
ERROR nodes. An ERROR node is classified from the source text it covers (plus the rest of its
line, with string literals blanked so a ``'?'`` inside quotes cannot mislead the classifier);
whatever the classification, an ERROR node is always a finding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import tree_sitter
import tree_sitter_powershell

#: (cmdlet, parameter, shortest prefix PowerShell would bind to it, source). Each was checked
#: against the 5.1 help (MicrosoftDocs/PowerShell-Docs reference/5.1/...: the 5.1 syntax blocks
#: lack them) and the 7.x help that has them. The prefix is the shortest abbreviation that is
#: not also a prefix of a 5.1 parameter (common parameters included: ``-De`` is ``-Debug``) of
#: the same cmdlet, so ``-Dep`` is caught like ``-Depth``.
SEVEN_ONLY_PARAMETERS: tuple[tuple[str, str, str, str], ...] = (
    ("ConvertFrom-Json", "-AsHashtable", "-A", "5.1 syntax: ConvertFrom-Json [-InputObject] <String> only; 6.0 added it"),
    ("ConvertFrom-Json", "-Depth", "-Dep", "5.1 syntax: ConvertFrom-Json [-InputObject] <String> only; 6.2 added it"),
    ("ConvertFrom-Json", "-NoEnumerate", "-N", "5.1 syntax: ConvertFrom-Json [-InputObject] <String> only; 7.0 added it"),
    ("ConvertTo-Json", "-EnumsAsStrings", "-En", "5.1 syntax: -InputObject, -Depth, -Compress only; 6.2 added it"),
    ("ConvertTo-Json", "-AsArray", "-A", "5.1 syntax: -InputObject, -Depth, -Compress only; 6.2 added it"),
    ("ConvertTo-Json", "-EscapeHandling", "-Es", "5.1 syntax: -InputObject, -Depth, -Compress only; 6.2 added it"),
    ("Get-Content", "-AsByteStream", "-As", "6.0 replaced 5.1's -Encoding Byte with it"),
    ("Set-Content", "-AsByteStream", "-As", "6.0 replaced 5.1's -Encoding Byte with it"),
    ("Invoke-WebRequest", "-SkipCertificateCheck", "-Sk", "6.0 (PowerShell/PowerShell#2006); 5.1 has no such switch"),
    ("Invoke-RestMethod", "-SkipCertificateCheck", "-Sk", "6.0 (PowerShell/PowerShell#2006); 5.1 has no such switch"),
    ("Test-Connection", "-TargetName", "-Ta", "5.1 syntax: [-ComputerName] <String[]>; 6.0 rewrote the cmdlet"),
    ("ForEach-Object", "-Parallel", "-Pa", "7.0"),
)
#: aliases Windows PowerShell 5.1 defines for the cmdlets above
ALIASES = {"%": "ForEach-Object", "foreach": "ForEach-Object", "gc": "Get-Content", "cat": "Get-Content",
           "type": "Get-Content", "sc": "Set-Content", "iwr": "Invoke-WebRequest", "curl": "Invoke-WebRequest",
           "wget": "Invoke-WebRequest", "irm": "Invoke-RestMethod"}
#: automatic variables that do not exist in 5.1 (so they are silently $null there)
SEVEN_ONLY_VARIABLES = {"psstyle": "7.2", "iswindows": "6.0", "islinux": "6.0", "ismacos": "6.0", "iscoreclr": "6.0"}

_STRING = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"`]|`.)*\"")


@dataclass(frozen=True)
class Finding:
    """One 5.1 incompatibility: rule id, 1-based line, message."""

    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


def parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def _walk(node):
    yield node
    for c in node.children:
        yield from _walk(c)


def _text(src: bytes, node) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8", errors="replace")


def _classify_error(src: bytes, node) -> tuple[str, str]:
    """(rule, message) for an ERROR node, from the code it covers up to the end of its line."""
    end = src.find(b"\n", node.end_byte)
    window = src[node.start_byte:len(src) if end < 0 else end].decode("utf-8", errors="replace")
    code = _STRING.sub("''", window)
    covered = _STRING.sub("''", _text(src, node))
    if "??=" in code:
        return "null-assignment", "`??=` (null-coalescing assignment) is PowerShell 7; write `if ($null -eq $x) { $x = ... }`"
    if "??" in code:
        return "null-coalescing", "`??` (null-coalescing) is PowerShell 7; write `if ($null -ne $a) { $a } else { $b }`"
    if re.search(r"\?\s*[.\[]", covered) or re.search(r"^\s*\?\s*[.\[]", code):
        return "null-conditional", "`?.` / `?[]` (null-conditional access) is PowerShell 7; test for $null first"
    if re.search(r"\bclean\s*(\{|$)", code, re.IGNORECASE):
        return "clean-block", "a `clean {}` block is PowerShell 7.3; use try/finally in the end block"
    if re.search(r"\?[^:]*:", code):
        return "ternary", "the ternary `? :` is PowerShell 7; write `if (...) { ... } else { ... }`"
    return "parse-error", f"does not parse: {_text(src, node)[:60]!r}"


def _param_name(text: str) -> str:
    return text.split(":", 1)[0]  # -Depth:3 binds -Depth


def lint(source: bytes | str) -> list[Finding]:
    """Every 5.1 incompatibility in ``source``, in source order (empty: clean)."""
    src = source.encode("utf-8") if isinstance(source, str) else source
    tree = parser().parse(src)
    out: list[Finding] = []
    seen_error_ranges: list[tuple[int, int]] = []
    seven = {}
    for cmd, param, prefix, why in SEVEN_ONLY_PARAMETERS:
        seven.setdefault(cmd.lower(), []).append((param, prefix, why))
    for n in _walk(tree.root_node):
        line = n.start_point[0] + 1
        if n.type == "ERROR" or n.is_missing:
            # report the outermost ERROR only (nested ones repeat it)
            if any(a <= n.start_byte and n.end_byte <= b for a, b in seen_error_ranges):
                continue
            seen_error_ranges.append((n.start_byte, n.end_byte))
            rule, message = _classify_error(src, n) if n.type == "ERROR" else (
                "parse-error", f"missing {n.type!r}")
            out.append(Finding(rule, line, message))
        elif n.type == "pipeline_chain_tail":
            out.append(Finding("pipeline-chain", line,
                               f"`{_text(src, n).strip()}` pipeline chains are PowerShell 7; use `if ($?) {{ ... }}`"))
        elif n.type == "variable":
            name = _text(src, n).lstrip("$@").strip("{}").lower()
            name = name.split(":", 1)[-1]  # $global:PSStyle
            if name in SEVEN_ONLY_VARIABLES:
                out.append(Finding("automatic-variable", line,
                                   f"${name} exists only from PowerShell {SEVEN_ONLY_VARIABLES[name]} "
                                   "(it is silently $null in 5.1)"))
        elif n.type == "command":
            names = [c for c in n.children if c.type == "command_name"]
            if not names:
                continue
            cmd = _text(src, names[0])
            key = ALIASES.get(cmd.lower(), cmd).lower()
            if key == "clean" and any(c.type == "command_elements" and "{" in _text(src, c) for c in n.children):
                # `function f { clean { } }` parses as a call of a command named clean
                out.append(Finding("clean-block", line, "a `clean {}` block is PowerShell 7.3; use try/finally"))
                continue
            for c in n.children:
                if c.type != "command_elements":
                    continue
                for p in c.children:
                    if p.type != "command_parameter":
                        continue
                    used = _param_name(_text(src, p)).lower()
                    for param, prefix, why in seven.get(key, ()):
                        if len(used) >= len(prefix) and param.lower().startswith(used):
                            rule = "parallel" if param == "-Parallel" else "parameter-7"
                            out.append(Finding(rule, line, f"{cmd} {param} does not exist in Windows PowerShell 5.1 "
                                                           f"({why})"))
    out.sort(key=lambda f: f.line)
    return out
