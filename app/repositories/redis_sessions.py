"""Sessions in Redis: `<ns>:{<id>}:meta` hash, `:doc:<name>` hashes, `:log:<name>` lists,
`:requests` hash (idempotency records), `:lock` string. `<ns>:req:{<key>}` remembers which
session a `create_once` key made.

The `{<id>}` hash tag keeps a session in one slot, so its scripts work on Cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from redis import exceptions as rx
from redis.asyncio.lock import Lock

from ._checks import check_changes, check_doc, check_log
from ._codec import dumps, loads, loads_all, meta_from_dict, meta_to_dict
from ._redis import TRANSIENT, Lua, RedisClient, guarded, pairs, store_errors
from .base import (
    DOC_NAMES,
    LOG_NAMES,
    Changes,
    DocName,
    InvalidId,
    Lease,
    LockLost,
    LogName,
    SessionBusy,
    SessionExists,
    SessionMeta,
    SessionNotFound,
    SessionSnapshot,
    StoreUnavailable,
    check_request_key,
    check_session_id,
    is_session_id,
    utcnow,
)

log = logging.getLogger(__name__)

_KEYS: Final = (
    "meta",
    *(f"doc:{d}" for d in DOC_NAMES),
    *(f"log:{lg}" for lg in LOG_NAMES),
    "requests",
)

# Create-if-absent: KEYS = the meta key; ARGV = ttl, then field/value pairs. 0: it exists.
_CREATE_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# One commit = one atomic script. It refuses a session whose meta is gone (no resurrection)
# and, when fenced, a lock that no longer holds the caller's token (-2: nothing written);
# then applies every change and re-arms the expiry of all data keys together. An append
# never reads its log. KEYS = _KEYS of one session, then its lock key (declared, so Cluster
# routes it). ARGV = ttl, updated_at, token ('' = unfenced), then groups of
# (op, key index, n, n items): 'h' HSET n field/value pairs, 'x' HDEL n fields, 'r' RPUSH n.
_COMMIT_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[#KEYS]) ~= ARGV[3] then return -2 end
local i = 4
while i <= #ARGV do
  local op, target, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  i = i + 3
  local last = i + n - 1
  if op == 'h' then last = i + 2 * n - 1 end
  for j = i, last, 1000 do  -- chunks keep unpack() within Lua's C stack limit
    local k = math.min(j + 999, last)
    if op == 'r' then redis.call('RPUSH', target, unpack(ARGV, j, k))
    elseif op == 'h' then redis.call('HSET', target, unpack(ARGV, j, k))
    else redis.call('HDEL', target, unpack(ARGV, j, k)) end
  end
  i = last + 1
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
for k = 1, #KEYS - 1 do redis.call('EXPIRE', KEYS[k], ARGV[1]) end
return 0
"""

# One atomic read of a session: KEYS = meta, the wanted docs, the wanted logs, then (when
# ARGV[3] names a request key) the requests hash; ARGV = how many docs, how many logs, key.
# One command and one reply (a MULTI/EXEC of the same costs the client six of each, which
# the polled status routes feel); an empty meta reply means "no such session".
_READ_LUA: Final = """
local docs, logs = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, docs + 1 do out[i] = redis.call('HGETALL', KEYS[i]) end
for i = docs + 2, docs + 1 + logs do out[i] = redis.call('LRANGE', KEYS[i], 0, -1) end
if ARGV[3] then out[docs + logs + 2] = redis.call('HGET', KEYS[#KEYS], ARGV[3]) end
return out
"""

# Claim a create_once key: set it when absent (or when it still holds `stale`, a claim
# whose session is gone); otherwise answer the claim that is there. KEYS = the claim key;
# ARGV = value, ttl, stale value ('' = none).
_CLAIM_LUA: Final = """
local current = redis.call('GET', KEYS[1])
if (not current) or (ARGV[3] ~= '' and current == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ''
end
return current
"""


# Delete a session's data keys, answering how many there were and the create_once key its
# meta names ('' = none), read in the same step. KEYS = _KEYS of one session (meta first).
_UNLINK_LUA: Final = """
local request_key = redis.call('HGET', KEYS[1], 'request_key') or ''
return {redis.call('UNLINK', unpack(KEYS)), request_key}
"""

# Forget a create_once claim only while it names the deleted session. KEYS = the claim key;
# ARGV = the session id.
_FORGET_CLAIM_LUA: Final = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, claim = pcall(cjson.decode, current)
if ok and type(claim) == 'table' and claim['session_id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


_guarded = guarded("sessions")


@dataclass(frozen=True)
class _RedisLease:
    session_id: str
    token: str


class RedisSessionRepository:
    def __init__(
        self,
        *,
        client: RedisClient,
        ttl_seconds: int,
        lock_ttl_seconds: float = 30.0,
        lock_wait_seconds: float = 15.0,
        namespace: str = "hera",
        owns_client: bool = True,
    ) -> None:
        """`owns_client=False`: the client is shared (the app's one per process) and its
        owner closes it; `aclose` then leaves it open."""
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", namespace):
            # A brace would become the hash tag; glob characters would break iter_ids' MATCH.
            raise ValueError("namespace may hold only letters, digits, '_', '.', ':' and '-'")
        if ttl_seconds <= 0 or lock_ttl_seconds <= 0:
            raise ValueError("ttl_seconds and lock_ttl_seconds must be positive")
        self._client = client
        self._owns_client = owns_client
        self._ttl = int(ttl_seconds)
        self._lock_ttl = lock_ttl_seconds
        self._wait = lock_wait_seconds
        self._ns = namespace
        self._create_meta = Lua(client, _CREATE_LUA)
        self._unlink = Lua(client, _UNLINK_LUA)
        self._commit = Lua(client, _COMMIT_LUA)
        self._read = Lua(client, _READ_LUA)
        self._claim = Lua(client, _CLAIM_LUA)
        self._forget_claim = Lua(client, _FORGET_CLAIM_LUA)

    @property
    def namespace(self) -> str:
        """The first segment of every key of this store."""
        return self._ns

    def _base(self, session_id: str) -> str:
        return f"{self._ns}:{{{check_session_id(session_id)}}}"

    def _keys(self, session_id: str) -> list[str]:
        base = self._base(session_id)
        return [f"{base}:{part}" for part in _KEYS]

    @_guarded
    async def create(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> SessionMeta:
        meta = SessionMeta.new(session_id=session_id, created_at=created_at, owner_id=owner_id)
        return await self._create(meta)

    async def _create(self, meta: SessionMeta) -> SessionMeta:
        items = [x for kv in meta_to_dict(meta).items() if kv[1] is not None for x in kv]
        key = f"{self._base(meta.session_id)}:meta"
        # Create-if-absent in one atomic step, so an import never overwrites a live session.
        created = await self._create_meta(keys=[key], args=[self._ttl, *items])
        if not created:
            raise SessionExists(meta.session_id)
        return meta

    @_guarded
    async def create_once(
        self, *, request_key: str, fingerprint: str, owner_id: str | None = None
    ) -> tuple[SessionMeta, str | None]:
        # The claim key has its own slot (the key's tag), so it is never in one script with
        # a session's keys: create, then claim; a loser deletes its session and answers with
        # the winner's. A claim whose session is gone is taken over (compare-and-set).
        claim_key = self._claim_key(request_key)
        new = SessionMeta.new(
            session_id=None, created_at=None, owner_id=owner_id, request_key=request_key
        )
        meta = await self._create(new)
        value = dumps({"session_id": meta.session_id, "fp": fingerprint})
        stale = ""
        for _ in range(4):
            current = await self._claim(keys=[claim_key], args=[value, self._ttl, stale])
            if not current:
                return meta, None
            try:
                earlier = loads(current)
                found = await self.get_meta(session_id=str(earlier["session_id"]))
            except (SessionNotFound, InvalidId, KeyError, TypeError, ValueError):
                stale = current.decode()
                continue
            await self.delete(session_id=meta.session_id)
            return found, str(earlier.get("fp", ""))
        raise StoreUnavailable("sessions", "request key kept changing hands")

    @_guarded
    async def exists(self, *, session_id: str) -> bool:
        return bool(await self._client.exists(self._keys(session_id)[0]))

    @_guarded
    async def get_meta(self, *, session_id: str) -> SessionMeta:
        return self._meta(session_id, await self._client.hgetall(self._keys(session_id)[0]))

    @staticmethod
    def _meta(session_id: str, raw: Mapping[Any, Any]) -> SessionMeta:
        if not raw:
            raise SessionNotFound(session_id)
        return meta_from_dict({k.decode(): v.decode() for k, v in raw.items()})

    @_guarded
    async def load(
        self,
        *,
        session_id: str,
        docs: Sequence[DocName] = DOC_NAMES,
        logs: Sequence[LogName] = (),
        request_key: str | None = None,
    ) -> SessionSnapshot:
        base = self._base(session_id)
        doc_names = [check_doc(d) for d in docs]
        log_names = [check_log(lg) for lg in logs]
        keys = [
            f"{base}:meta",
            *(f"{base}:doc:{name}" for name in doc_names),
            *(f"{base}:log:{name}" for name in log_names),
        ]
        args: list[str | int] = [len(doc_names), len(log_names)]
        if request_key is not None:
            keys.append(f"{base}:requests")
            args.append(check_request_key(request_key))
        # One script: one round trip and a consistent snapshot (no write lands in between).
        meta_raw, *rest = await self._read(keys=keys, args=args)
        snap = SessionSnapshot(meta=self._meta(session_id, pairs(meta_raw)))
        for name, flat in zip(doc_names, rest, strict=False):  # docs come first
            snap.docs[name] = {k.decode(): loads(v) for k, v in pairs(flat).items()}
        for name, items in zip(log_names, rest[len(doc_names) :], strict=False):
            snap.logs[name] = loads_all(items)
        if request_key is not None and len(rest) > len(doc_names) + len(log_names):
            raw = rest[-1]
            snap.request = loads(raw) if raw else None
        return snap

    @_guarded
    async def commit(
        self, *, session_id: str, changes: Changes, lease: Lease | None = None
    ) -> None:
        check_changes(changes)
        index = {part: number for number, part in enumerate(_KEYS, start=1)}
        args: list[str | int] = []
        for doc, fields in changes.docs.items():
            sets = [x for k, v in fields.items() if v is not None for x in (k, dumps(v))]
            drops = [k for k, v in fields.items() if v is None]
            if sets:
                args += ["h", index[f"doc:{doc}"], len(sets) // 2, *sets]
            if drops:
                args += ["x", index[f"doc:{doc}"], len(drops), *drops]
        for log_name, entries in changes.logs.items():
            if entries:
                args += ["r", index[f"log:{log_name}"], len(entries), *map(dumps, entries)]
        if changes.requests:
            pairs = [x for k, v in changes.requests.items() for x in (k, dumps(v))]
            args += ["h", index["requests"], len(pairs) // 2, *pairs]
        if changes.owner_id is not None:
            args += ["h", index["meta"], 1, "owner_id", changes.owner_id]
        stamp = utcnow().isoformat(timespec="microseconds")  # fixed width: flat append bytes
        token = lease.token if lease is not None else ""
        if lease is not None and lease.session_id != session_id:
            raise LockLost(session_id)
        keys = [*self._keys(session_id), f"{self._base(session_id)}:lock"]
        result = int(await self._commit(keys=keys, args=[self._ttl, stamp, token, *args]))
        if result == -1:
            raise SessionNotFound(session_id)
        if result == -2:
            raise LockLost(session_id)

    def lock(
        self, *, session_id: str, wait: float | None = None, tag: str | None = None
    ) -> AbstractAsyncContextManager[Lease]:
        key = f"{self._base(session_id)}:lock"
        return self._locked(session_id, key, self._wait if wait is None else wait, tag)

    @asynccontextmanager
    async def _locked(
        self, session_id: str, key: str, wait: float, tag: str | None
    ) -> AsyncIterator[Lease]:
        # A new Lock per use; thread_local=False so the heartbeat task sees the same token.
        # The token carries the holder's tag, so a waiter that gives up can tell a retry of
        # a request still running from another turn.
        token = f"{uuid.uuid4().hex}:{tag or ''}"
        lock = self._client.lock(
            key, timeout=self._lock_ttl, blocking_timeout=wait, thread_local=False
        )
        with store_errors("sessions"):
            acquired = await lock.acquire(token=token)
            if not acquired:
                holder = await self._client.get(key) if tag else None
                same = isinstance(holder, bytes) and holder.endswith(f":{tag}".encode())
                raise SessionBusy(session_id, same_request=same)
        stop = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(lock, session_id, stop))
        try:
            yield _RedisLease(session_id, token)
        finally:
            # A flag, not only cancel(): on 3.11 a cancel that lands while redis-py's own
            # wait_for completes is swallowed, and the heartbeat would renew forever.
            stop.set()
            try:
                while not heartbeat.done():
                    heartbeat.cancel()
                    await asyncio.wait({heartbeat}, timeout=0.05)
            finally:
                await self._release(lock, session_id)

    async def _heartbeat(self, lock: Lock, session_id: str, stop: asyncio.Event) -> None:
        # Re-arm the full TTL every third of it: a long turn keeps the lock, a dead one frees it.
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lock_ttl / 3):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await lock.extend(self._lock_ttl, replace_ttl=True)
            except rx.LockError:  # not owned any more (expired, or taken over)
                log.warning("lock of session %s expired while its turn ran", session_id)
                return
            except TRANSIENT as exc:  # keep trying: up to two thirds of the TTL are left
                log.warning("could not extend lock of session %s: %r", session_id, exc)

    async def _release(self, lock: Lock, session_id: str) -> None:
        # Never an error: the commit was the fence (a turn whose lock was lost committed
        # nothing and said so), so a turn that committed is never answered with one.
        try:
            with store_errors("sessions"):
                await lock.release()
        except rx.LockNotOwnedError:
            log.warning("lock of session %s expired before its turn ended", session_id)
        except StoreUnavailable as exc:  # the key expires by itself within one lock TTL
            log.warning("could not release lock of session %s: %s", session_id, exc)

    @_guarded
    async def delete(self, *, session_id: str) -> bool:
        # The lock key stays: a turn that deletes its own session must still release it.
        deleted, request_key = await self._unlink(keys=self._keys(session_id))
        if request_key:  # its own slot: a second call, never one script
            claim = self._claim_key(request_key.decode())
            await self._forget_claim(keys=[claim], args=[session_id])
        return bool(deleted)

    def _claim_key(self, request_key: str) -> str:
        return f"{self._ns}:req:{{{check_request_key(request_key)}}}"

    async def iter_ids(self) -> AsyncIterator[str]:
        # SCAN may return a key twice (rehashing); a set of ids is far smaller than sessions.
        seen: set[str] = set()
        with store_errors("sessions"):
            async for key in self._client.scan_iter(match=f"{self._ns}:{{*}}:meta", count=500):
                session_id = key.decode()[len(self._ns) + 2 : -len("}:meta")]
                if is_session_id(session_id) and session_id not in seen:
                    seen.add(session_id)
                    yield session_id

    @_guarded
    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
