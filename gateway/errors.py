"""The gateway's exception hierarchy: each error knows its SMTP reply and a stable code.

Modelled on dangerzone's ``conversion_errors``: a failure crosses process boundaries as its
``code`` (a short SHOUTED string), never as a traceback, and turns into exactly one reply.
Nothing here is raised for control flow of ordinary verdicts; those are ``Decision`` values.
"""

from __future__ import annotations

from gateway import replies
from gateway.replies import Reply


class MugaikaError(Exception):
    """Base class. ``reply`` is what the SMTP sender sees; ``code`` is logged and counted."""

    reply: Reply = replies.R451_INTERNAL
    code: str = "INTERNAL_ERROR"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail


class ConfigError(MugaikaError):
    """A configuration or policy file is invalid. ``str()`` is the one-line message for users."""

    code = "CONFIG_INVALID"

    def __init__(self, detail: str, messages: list[str] | None = None) -> None:
        super().__init__(detail)
        self.messages = messages or [detail]


class WorkerCrashed(MugaikaError):
    """A worker process died (signal, memory limit, interpreter crash) while holding a job."""

    reply = replies.R451_WORKER_FAILED
    code = "WORKER_CRASHED"


class WorkerTimeout(MugaikaError):
    """A worker did not answer within its wall-clock limit and was killed."""

    reply = replies.R451_WORKER_TIMEOUT
    code = "WORKER_TIMEOUT"


class WorkerMemoryExceeded(WorkerCrashed):
    """A worker hit its address-space limit (MemoryError inside, or killed for it)."""

    code = "WORKER_MEMORY"


class DownstreamUnavailable(MugaikaError):
    """The downstream server could not be reached, or dropped the connection."""

    reply = replies.R451_DOWNSTREAM_UNAVAILABLE
    code = "DOWNSTREAM_UNAVAILABLE"


class DownstreamRefused(MugaikaError):
    """The downstream server answered with a 4xx or 5xx; ``reply`` carries its code and text."""

    code = "DOWNSTREAM_REFUSED"

    def __init__(self, reply: Reply, stage: str) -> None:
        super().__init__(f"{stage}: {reply}")
        self.reply = reply
        self.stage = stage


class StoreUnavailable(MugaikaError):
    """The quarantine store could not commit; the sender must retry."""

    reply = replies.R451_STORE_UNAVAILABLE
    code = "STORE_UNAVAILABLE"


class CannotSanitize(MugaikaError):
    """A part could not be made harmless. The policy strips or quarantines it; never passes it."""

    code = "CANNOT_SANITIZE"

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
