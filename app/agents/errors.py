"""Errors the agents raise; the HTTP edge maps them (agents know nothing of HTTP)."""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agents' own errors."""


class MessageTooLong(AgentError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"message longer than {limit} characters")
        self.limit = limit


class EmptyMessage(AgentError):
    pass


class InterviewIncomplete(AgentError):
    def __init__(self, missing: list[str]) -> None:
        super().__init__("interview incomplete")
        self.missing = missing


class PreconditionFailed(AgentError):
    """The session is not in a state that allows the request (e.g. no partner image yet)."""

    def __init__(self, message: str, *, code: str = "precondition_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UploadTooLarge(AgentError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload larger than {limit} bytes")
        self.limit = limit


class ImageNotFound(AgentError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no image named {name!r}")
        self.name = name


class IdempotencyKeyReused(AgentError):
    """An Idempotency-Key already answered a different request."""


class QuotaExceeded(AgentError):
    def __init__(self, quota: str, limit: int) -> None:
        super().__init__(f"session quota {quota} ({limit}) used up")
        self.quota = quota
        self.limit = limit
