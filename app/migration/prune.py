"""Pruning: expired sessions the file store keeps on disk, and blobs whose session is gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from app.migration.records import BLOB_PREFIX
from app.repositories.base import (
    BlobRepository,
    SessionRepository,
    is_session_id,
    session_blob_prefix,
)


@runtime_checkable
class SupportsPrune(Protocol):
    """A session store whose expired sessions stay on disk until pruned (the file store)."""

    async def prune_expired(self, *, dry_run: bool = False) -> list[str]: ...


async def orphan_blob_sessions(sessions: SessionRepository, blobs: BlobRepository) -> list[str]:
    """Ids that own blobs but no live session (expired Redis sessions leave their images)."""
    orphans: list[str] = []
    last = ""
    async for info in blobs.list(prefix=BLOB_PREFIX):  # key order: one session at a time
        parts = info.key.split("/")
        sid = parts[1] if len(parts) > 2 else ""
        fresh = sid and sid != last and is_session_id(sid)
        if fresh and not await sessions.exists(session_id=sid):
            orphans.append(sid)
        last = sid
    return orphans


@dataclass
class PruneResult:
    sessions: list[str] = field(default_factory=list)  # expired sessions removed
    blob_sessions: list[str] = field(default_factory=list)  # sessions whose blobs go
    blobs_deleted: int = 0


async def prune(
    sessions: SessionRepository,
    blobs: BlobRepository,
    *,
    dry_run: bool = False,
    orphan_blobs: bool = False,
) -> PruneResult:
    result = PruneResult()
    if isinstance(sessions, SupportsPrune):
        result.sessions = await sessions.prune_expired(dry_run=dry_run)
    result.blob_sessions = list(result.sessions)
    if orphan_blobs:
        known = set(result.sessions)
        orphans = await orphan_blob_sessions(sessions, blobs)
        result.blob_sessions += [sid for sid in orphans if sid not in known]
    if not dry_run:
        for sid in result.blob_sessions:
            result.blobs_deleted += await blobs.delete_prefix(prefix=session_blob_prefix(sid))
    return result
