"""The transport seam: one open session per target per run, library errors mapped here.

A transport is a context manager. ``__enter__`` connects (and authenticates);
``__exit__`` closes. Providers receive the open transport and never see library
objects' exceptions: every transport maps them to :mod:`kmsdeploy.errors`
``TransportError`` subclasses with a ``transient`` flag, and the executor retries
only transient ones.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect`` for establishing a session, ``operation`` for one request/command."""

    connect: float = 10.0
    operation: float = 60.0


class Transport:
    """Base class; subclasses set ``kind`` (winrm, ssh, rfc2136, ldap) and implement open/close."""

    kind: str = ""
    #: requests (round trips) made so far; tests and benchmarks read it
    requests: int = 0

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
