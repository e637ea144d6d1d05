"""In-process session store: the fast fake for agent tests (one process only)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ._checks import check_doc, check_entries, check_fields, check_log
from ._codec import merge_fields
from .base import (
    DOC_NAMES,
    DocName,
    JSONDict,
    LogName,
    SessionBusy,
    SessionExists,
    SessionMeta,
    SessionNotFound,
    SessionSnapshot,
    check_session_id,
    utcnow,
)


@dataclass
class _Entry:
    meta: SessionMeta
    expires_at: float
    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)


class MemorySessionRepository:
    """Returns deep copies so callers can never mutate stored state by accident."""

    def __init__(
        self,
        *,
        ttl_seconds: int = 86400,
        lock_wait_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._wait = lock_wait_seconds
        self._clock = clock
        self._data: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _live(self, session_id: str) -> _Entry:
        entry = self._data.get(check_session_id(session_id))
        if entry is None or entry.expires_at <= self._clock():
            self._data.pop(session_id, None)
            raise SessionNotFound(session_id)
        return entry

    def _touch(self, entry: _Entry) -> None:
        entry.meta = replace(entry.meta, updated_at=utcnow())
        entry.expires_at = self._clock() + self._ttl

    async def create(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> SessionMeta:
        meta = SessionMeta.new(session_id=session_id, created_at=created_at, owner_id=owner_id)
        if await self.exists(session_id=meta.session_id):
            raise SessionExists(meta.session_id)
        self._data[meta.session_id] = _Entry(meta, self._clock() + self._ttl)
        return meta

    async def exists(self, *, session_id: str) -> bool:
        try:
            self._live(session_id)
        except SessionNotFound:
            return False
        return True

    async def get_meta(self, *, session_id: str) -> SessionMeta:
        return self._live(session_id).meta

    async def load(
        self,
        *,
        session_id: str,
        docs: Sequence[DocName] = DOC_NAMES,  # type: ignore[assignment]
        logs: Sequence[LogName] = (),
    ) -> SessionSnapshot:
        entry = self._live(session_id)
        return SessionSnapshot(
            meta=entry.meta,
            docs={d: copy.deepcopy(entry.docs.get(check_doc(d), {})) for d in docs},
            logs={lg: copy.deepcopy(entry.logs.get(check_log(lg), [])) for lg in logs},
        )

    async def update(self, *, session_id: str, doc: DocName, fields: Mapping[str, Any]) -> None:
        check_doc(doc)
        check_fields(fields)
        entry = self._live(session_id)
        entry.docs[doc] = merge_fields(entry.docs.get(doc, {}), copy.deepcopy(dict(fields)))
        self._touch(entry)

    async def append(self, *, session_id: str, log: LogName, entries: Sequence[JSONDict]) -> None:
        check_log(log)
        check_entries(entries)
        entry = self._live(session_id)
        items = entry.logs.setdefault(log, [])
        items.extend(copy.deepcopy(list(entries)))
        self._touch(entry)

    async def log_length(self, *, session_id: str, log: LogName) -> int:
        check_log(log)
        return len(self._live(session_id).logs.get(log, []))

    @asynccontextmanager
    async def _locked(self, session_id: str, wait: float | None) -> AsyncIterator[None]:
        lock = self._locks.setdefault(check_session_id(session_id), asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self._wait if wait is None else wait)
        except TimeoutError:
            raise SessionBusy(session_id) from None
        try:
            yield
        finally:
            lock.release()

    def lock(self, *, session_id: str, wait: float | None = None) -> Any:
        return self._locked(session_id, wait)

    async def delete(self, *, session_id: str) -> bool:
        existed = await self.exists(session_id=session_id)
        self._data.pop(session_id, None)
        return existed

    async def iter_ids(self) -> AsyncIterator[str]:
        for session_id in list(self._data):
            if await self.exists(session_id=session_id):
                yield session_id

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
