"""A chat history entry: who said what, when. Logs store these dicts, append-only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JSONDict = dict[str, Any]


class HistoryEntry(BaseModel):
    """`speaker` is "user", "hera", or a family member's name (with its `role`)."""

    model_config = ConfigDict(frozen=True)
    speaker: str
    role: str | None = None  # family entries only: the member's role, or "user"
    message: str
    timestamp: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    def stored(self) -> JSONDict:
        return self.model_dump(exclude_none=True)
