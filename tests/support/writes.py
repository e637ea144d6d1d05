"""Single-part writes for tests that set up or poke at stored state: each is one commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.repositories.base import Changes, DocName, JSONDict, LogName, SessionRepository


async def update(
    repo: SessionRepository, *, session_id: str, doc: DocName, fields: Mapping[str, Any]
) -> None:
    await repo.commit(session_id=session_id, changes=Changes().update(doc, fields))


async def append(
    repo: SessionRepository, *, session_id: str, log: LogName, entries: Sequence[JSONDict]
) -> None:
    await repo.commit(session_id=session_id, changes=Changes().append(log, entries))
