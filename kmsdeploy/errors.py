"""The kmsdeploy exception tree.

Every error a user can meet is one of these; the CLI maps them to exit codes and
never shows a traceback for them.

    KmsdeployError                      base; ``str(e)`` is the user-facing message
    ├── SpecError                       invalid input; carries a list of Diagnostics
    ├── SecretError                     a secret reference cannot be resolved (env/file)
    ├── PlanError                       a saved plan cannot be used (stale, corrupt, other specs)
    ├── TransportError                  talking to a target failed; ``transient`` says retry may help
    │   ├── AuthenticationError         credentials refused (never transient)
    │   ├── UnreachableError            connection refused / no route / DNS failure
    │   ├── TimeoutError_               connect or operation timed out
    │   └── HostKeyError                SSH host key unknown or changed (never transient)
    ├── ProviderError                   the target answered, but the operation failed
    │   └── ConflictError               the object changed between read and write (e.g. RFC 2136 prerequisite)
    └── ConvergenceError                after apply, a re-read still differs from the desired state

Library exceptions (dnspython, paramiko, requests/pywinrm, ldap3) are mapped to
these at the transport/provider boundary and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One located problem: ``file:line:col: message`` (location optional)."""

    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        prefix = ""
        if self.file:
            prefix = f"{self.file}:{self.line or 1}:{self.col or 1}: "
        tag = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{tag}{self.message}"


class KmsdeployError(Exception):
    """Base of every error kmsdeploy reports to a user."""


class SpecError(KmsdeployError):
    """Invalid specs; ``diagnostics`` holds every problem found (not only the first)."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class SecretError(KmsdeployError):
    """A secret reference could not be resolved. The message names the reference, never the value."""


class PlanError(KmsdeployError):
    """A saved plan cannot be applied or shown."""


class TransportError(KmsdeployError):
    """Talking to a target failed. ``transient`` is True when a retry may succeed."""

    transient = True

    def __init__(self, message: str, *, target: str | None = None, transient: bool | None = None):
        super().__init__(message)
        self.target = target
        if transient is not None:
            self.transient = transient


class AuthenticationError(TransportError):
    transient = False


class UnreachableError(TransportError):
    transient = True


class TimeoutError_(TransportError):  # noqa: N801 - avoid shadowing the builtin
    transient = True


class HostKeyError(TransportError):
    transient = False


class ProviderError(KmsdeployError):
    """The target was reached but an operation failed (a refused update, a Windows error code...)."""

    def __init__(self, message: str, *, target: str | None = None, ref: object = None):
        super().__init__(message)
        self.target = target
        self.ref = ref


class ConflictError(ProviderError):
    """The object changed between the read and the write; nothing was overwritten."""


class ConvergenceError(KmsdeployError):
    """After apply, re-reading the targets still shows differences."""
