"""The Windows PowerShell 5.1 lint rules (tests/unit/ps51_lint.py): each rule fed a violating
snippet, its 5.1 spelling passing, and the real runner and bootstrap passing."""
from __future__ import annotations

import pytest

from kmsdeploy.providers.windows import bootstrap
from tests.unit import ps51_lint
from tests.unit.ps51_lint import lint

VIOLATIONS = [
    ("null-conditional", "$p = Get-Service -Name sppsvc\n$s = $p?.Status\n"),
    ("null-conditional", "$n = 1, 2\n$x = ${n}?[0]\n"),
    ("null-conditional", "$x = ${p}?.StartTime\n"),
    ("null-coalescing", "$x = $a ?? 'fallback'\n"),
    ("null-coalescing", "Write-Output ($null ?? 2)\n"),
    ("null-assignment", "$x ??= 1\n"),
    ("ternary", "$x = $a ? 1 : 2\n"),
    ("ternary", "$r = ($x -gt 1) ? 'big' : 'small'\n"),
    ("pipeline-chain", "Get-Service sppsvc && Restart-Service sppsvc\n"),
    ("pipeline-chain", "Get-Item x || Write-Error 'no x'\n"),
    ("parallel", "1..3 | ForEach-Object -Parallel { $_ }\n"),
    ("parallel", "1..3 | % -Para { $_ } -ThrottleLimit 2\n"),
    ("clean-block", "function f { process { 1 } clean { 2 } }\n"),
    ("clean-block", "function f {\n  clean { Remove-Item x }\n}\n"),
    ("automatic-variable", "$PSStyle.Reset\n"),
    ("automatic-variable", "if ($IsWindows) { 1 }\n"),
    ("automatic-variable", "$global:PSStyle.OutputRendering = 'PlainText'\n"),
    ("parameter-7", "$o = ConvertFrom-Json -InputObject $t -AsHashtable\n"),
    ("parameter-7", "$o = ConvertFrom-Json -InputObject $t -Depth 20\n"),
    ("parameter-7", "$o = $t | ConvertFrom-Json -Dep:20\n"),
    ("parameter-7", "$j = ConvertTo-Json -InputObject $o -EnumsAsStrings\n"),
    ("parameter-7", "$j = ConvertTo-Json -InputObject $o -AsArray -Compress\n"),
    ("parameter-7", "$b = Get-Content -Path x.bin -AsByteStream\n"),
    ("parameter-7", "$b = gc x.bin -AsByteStream\n"),
    ("parameter-7", "Invoke-WebRequest -Uri https://x -SkipCertificateCheck\n"),
    ("parameter-7", "Test-Connection -TargetName kms01\n"),
    ("parse-error", "function f { \n"),
]


@pytest.mark.parametrize("rule,snippet", VIOLATIONS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(VIOLATIONS)])
def test_rule_rejects_its_snippet(rule, snippet):
    found = lint(snippet)
    assert rule in {f.rule for f in found}, f"{rule} not reported for {snippet!r}: {found}"
    assert all(f.line >= 1 for f in found)


FIVE_ONE = [
    "$s = $null; if ($null -ne $p) { $s = $p.Status }\n",
    "$x = if ($a) { 1 } else { 2 }\n",
    "Get-Service sppsvc; if ($?) { Restart-Service sppsvc }\n",
    "1..3 | ForEach-Object -Process { $_ }\n",
    "1..3 | ForEach-Object { $_ } -PipelineVariable p\n",  # -Pi is not -Pa(rallel)
    "gci | ? { $_.Length -gt 0 }\n",  # `?` alone is 5.1's Where-Object alias
    "$o = ConvertFrom-Json -InputObject $t\n",
    "$j = ConvertTo-Json -InputObject $o -Depth 12 -Compress\n",
    "$b = Get-Content -Path x.bin -Encoding Byte\n",
    "Test-Connection -ComputerName kms01 -Count 1 -Quiet\n",
    "$m = 'is it ?? or ?. or a ? b : c'\n",  # inside strings: data, not syntax
    "function f { begin { 1 } process { 2 } end { 3 } }\n",
    "$isWin = [Environment]::OSVersion.Platform -eq 'Win32NT'\n",
]


@pytest.mark.parametrize("snippet", FIVE_ONE)
def test_five_one_spelling_passes(snippet):
    assert lint(snippet) == []


def test_the_grammar_still_turns_7_only_operators_into_errors():
    """If a newer tree-sitter-powershell starts accepting `?.`/`??`/ternaries, the ERROR-node
    rules go quiet: this pins the behaviour the classifier relies on."""
    p = ps51_lint.parser()
    for snippet in (b"$a?.b", b"$x = $a ?? 1", b"$x ??= 1", b"$x = $a ? 1 : 2"):
        assert p.parse(snippet).root_node.has_error, snippet


def test_real_runner_and_bootstrap_pass():
    runner = bootstrap.RUNNER_PATH.read_bytes()
    assert lint(runner) == [], "\n".join(map(str, lint(runner)))
    assert lint(bootstrap.bootstrap_script(bootstrap.runner_sha256())) == []


def test_findings_carry_the_line():
    found = lint("$a = 1\n$b = 2\n$c = $a ?? $b\n")
    assert [(f.rule, f.line) for f in found] == [("null-coalescing", 3)]
    assert "line 3: [null-coalescing]" in str(found[0])
