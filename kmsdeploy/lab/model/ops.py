"""What every service handler of the lab model receives and raises.

A handler is ``fn(ctx: OpContext, args: dict) -> data`` for one payload operation
(schemas/runner-payload.json). It reads and changes ``ctx.state`` (the host's JSON
state, saved by the caller when the whole payload has run) and raises
:class:`ModelError` with the code the runner would report (a Windows HRESULT from
reference A.6, or the runner's own ``KMSDEPLOY_`` code).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable


class ModelError(Exception):
    """An operation failed the way it would on Windows: ``code`` + ``message``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class OpContext:
    """The host being served, its mutable state and model-wide helpers."""

    host: str
    state: dict[str, Any]
    #: model-wide state (activation counts per key digest, over-limit fault keys)
    global_state: dict[str, Any] = field(default_factory=dict)
    now: Callable[[], _dt.datetime] = lambda: _dt.datetime.now(_dt.timezone.utc)
    #: the host's 'Key Management Service' log (12290s; :class:`.kmslog.KmsLog`), kept out of
    #: ``state`` because it holds up to a million events; None only for contexts that never log 12290
    kms_log: Any = None

    def kms(self):
        """The host's 'Key Management Service' log; a clear error when none is attached."""
        if self.kms_log is None:
            raise ModelError("KMSDEPLOY_ERROR", "lab model: no 'Key Management Service' log attached to this context "
                                                "(use LabModel.edit(host))")
        return self.kms_log

    def timestamp(self) -> str:
        return self.now().astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


Handler = Callable[[OpContext, dict], Any]
