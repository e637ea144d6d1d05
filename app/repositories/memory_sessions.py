"""In-process session store: the fast fake for agent tests (one process only)."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from ._checks import check_changes, check_doc, check_log
from ._codec import merge_fields
from .base import (
    DOC_NAMES,
    Changes,
    DocName,
    JSONDict,
    Lease,
    LockLost,
    LogName,
    SessionBusy,
    SessionExists,
    SessionMeta,
    SessionNotFound,
    SessionSnapshot,
    check_request_key,
    check_session_id,
    utcnow,
)


@dataclass
class _Entry:
    meta: SessionMeta
    expires_at: float
    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)
    requests: dict[str, JSONDict] = field(default_factory=dict)


@dataclass(frozen=True)
class _Lease:
    session_id: str
    token: str


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
        self._holders: dict[str, tuple[str, str | None]] = {}  # session -> (token, tag)
        # request key -> (session, fingerprint, until when the key answers)
        self._created: dict[str, tuple[str, str, float]] = {}

    def _live(self, session_id: str) -> _Entry:
        entry = self._data.get(check_session_id(session_id))
        if entry is None or entry.expires_at <= self._clock():
            self._data.pop(session_id, None)
            raise SessionNotFound(session_id)
        return entry

    async def create(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> SessionMeta:
        meta = SessionMeta.new(session_id=session_id, created_at=created_at, owner_id=owner_id)
        return await self._add(meta)

    async def _add(self, meta: SessionMeta) -> SessionMeta:
        if await self.exists(session_id=meta.session_id):
            raise SessionExists(meta.session_id)
        self._data[meta.session_id] = _Entry(meta, self._clock() + self._ttl)
        return meta

    async def create_once(
        self, *, request_key: str, fingerprint: str, owner_id: str | None = None
    ) -> tuple[SessionMeta, str | None]:
        earlier = self._created.get(check_request_key(request_key))
        live = earlier is not None and earlier[2] > self._clock()
        if earlier is not None and live and await self.exists(session_id=earlier[0]):
            return self._live(earlier[0]).meta, earlier[1]
        new = SessionMeta.new(
            session_id=None, created_at=None, owner_id=owner_id, request_key=request_key
        )
        meta = await self._add(new)
        self._created[request_key] = (meta.session_id, fingerprint, self._clock() + self._ttl)
        return meta, None

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
        docs: Sequence[DocName] = DOC_NAMES,
        logs: Sequence[LogName] = (),
        request_key: str | None = None,
    ) -> SessionSnapshot:
        entry = self._live(session_id)
        request = None
        if request_key is not None:
            request = copy.deepcopy(entry.requests.get(check_request_key(request_key)))
        return SessionSnapshot(
            meta=entry.meta,
            docs={d: copy.deepcopy(entry.docs.get(check_doc(d), {})) for d in docs},
            logs={lg: copy.deepcopy(entry.logs.get(check_log(lg), [])) for lg in logs},
            request=request,
        )

    async def commit(
        self, *, session_id: str, changes: Changes, lease: Lease | None = None
    ) -> None:
        check_changes(changes)
        entry = self._live(session_id)
        if lease is not None and self._holders.get(session_id, ("",))[0] != lease.token:
            raise LockLost(session_id)
        staged = copy.deepcopy(changes)
        for doc, fields in staged.docs.items():
            entry.docs[doc] = merge_fields(entry.docs.get(doc, {}), fields)
        for log, entries in staged.logs.items():
            entry.logs.setdefault(log, []).extend(entries)
        entry.requests.update(staged.requests)
        owner = staged.owner_id or entry.meta.owner_id
        entry.meta = replace(entry.meta, updated_at=utcnow(), owner_id=owner)
        entry.expires_at = self._clock() + self._ttl

    def lock(
        self, *, session_id: str, wait: float | None = None, tag: str | None = None
    ) -> AbstractAsyncContextManager[Lease]:
        return self._locked(check_session_id(session_id), wait, tag)

    @asynccontextmanager
    async def _locked(
        self, session_id: str, wait: float | None, tag: str | None
    ) -> AsyncIterator[Lease]:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self._wait if wait is None else wait)
        except TimeoutError:
            holder_tag = self._holders.get(session_id, ("", None))[1]
            same = tag is not None and tag == holder_tag
            raise SessionBusy(session_id, same_request=same) from None
        lease = _Lease(session_id, uuid.uuid4().hex)
        self._holders[session_id] = (lease.token, tag)
        try:
            yield lease
        finally:
            self._holders.pop(session_id, None)
            lock.release()

    async def delete(self, *, session_id: str) -> bool:
        existed = await self.exists(session_id=session_id)
        entry = self._data.pop(session_id, None)
        key = entry.meta.request_key if entry else None
        if key is not None and self._created.get(key, ("",))[0] == session_id:
            del self._created[key]
        return existed

    async def iter_ids(self) -> AsyncIterator[str]:
        for session_id in list(self._data):
            if await self.exists(session_id=session_id):
                yield session_id

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
