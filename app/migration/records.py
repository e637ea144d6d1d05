"""What every migration source yields: one session's content, independent of any store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from app.repositories.base import JSONDict

BLOB_PREFIX: Final = "sessions/"
PERSON_BLOB_PREFIX: Final = "users/"  # keepsakes (`person_blob_prefix`)


@dataclass(frozen=True)
class Photo:
    name: str  # logical image name: user, partner, child_N
    data: bytes
    content_type: str
    created_at: datetime


@dataclass
class SessionRecord:
    """Everything one session holds, store-independent: what a source yields."""

    session_id: str
    created_at: datetime | None = None
    owner_id: str | None = None
    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)
    photos: list[Photo] = field(default_factory=list)
