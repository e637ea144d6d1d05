"""Sessions in Redis: `<ns>:{<id>}:meta` hash, `:doc:<name>` hashes, `:log:<name>` lists, `:lock`.

The `{<id>}` hash tag keeps a session in one slot, so its script and MULTIs work on Cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Final, ParamSpec, TypeVar

import redis.asyncio
from redis import exceptions as rx
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from ._checks import check_doc, check_entries, check_fields, check_log
from ._codec import dumps, loads, loads_all, meta_from_dict, meta_to_dict
from .base import (
    DOC_NAMES,
    LOG_NAMES,
    DocName,
    JSONDict,
    LockLost,
    LogName,
    SessionBusy,
    SessionExists,
    SessionMeta,
    SessionNotFound,
    SessionSnapshot,
    StoreUnavailable,
    check_session_id,
    is_session_id,
    utcnow,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# BusyLoadingError (a restart) is a ConnectionError; ReadOnlyError means a failover is on.
_TRANSIENT: Final = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, OSError)
_KEYS: Final = ("meta", *(f"doc:{d}" for d in DOC_NAMES), *(f"log:{lg}" for lg in LOG_NAMES))

# One atomic round trip per write: it refuses a session whose meta is gone (no resurrection)
# and re-arms the expiry of all data keys together; an append never reads its log. KEYS = _KEYS
# of one session (declared, so Cluster routes it). ARGV = ttl, updated_at, op, target index in
# KEYS, payload; an update's payload is field, json ... where '' means HDEL (JSON is never '').
_CREATE_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
_WRITE_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local target = KEYS[tonumber(ARGV[4])]
local result = 0
if ARGV[3] == 'append' then
  if #ARGV < 5 then result = redis.call('LLEN', target) end
  for i = 5, #ARGV, 1000 do  -- chunks keep unpack() within Lua's C stack limit
    result = redis.call('RPUSH', target, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
else
  for i = 5, #ARGV, 2 do
    if ARGV[i + 1] == '' then redis.call('HDEL', target, ARGV[i])
    else redis.call('HSET', target, ARGV[i], ARGV[i + 1]) end
  end
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return result
"""

# One atomic read of a session: KEYS = meta, the wanted docs, then the wanted logs; ARGV[1] =
# how many docs. One command and one reply (a MULTI/EXEC of the same costs the client six of
# each, which the polled status routes feel); an empty meta reply means "no such session".
_READ_LUA: Final = """
local docs = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if i <= docs + 1 then out[i] = redis.call('HGETALL', KEYS[i])
  else out[i] = redis.call('LRANGE', KEYS[i], 0, -1) end
end
return out
"""


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat HGETALL reply from a script ([field, value, ...]) as a dict, like HGETALL's."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def create_redis_client(
    url: str, *, max_connections: int = 50, socket_timeout: float = 5.0
) -> redis.asyncio.Redis:
    # One per process. The blocking pool waits instead of raising "Too many connections"; the
    # retries survive a Redis restart (from_url alone never retries).
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        # A healthy Redis answers a connect in milliseconds; a black-holed one must not hold
        # a request past the 2 s the API promises for a 503.
        socket_connect_timeout=min(socket_timeout, 0.75),
        retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), 1),
        retry_on_error=[rx.ConnectionError, rx.TimeoutError],
        health_check_interval=30,
        decode_responses=False,
    )
    return redis.asyncio.Redis.from_pool(pool)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except _TRANSIENT as exc:
        # Only the type: messages can carry hosts or credentials from the URL.
        raise StoreUnavailable("sessions", type(exc).__name__) from exc


def _guarded(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _store_errors():
            return await fn(*args, **kwargs)

    return wrapper


class RedisSessionRepository:
    def __init__(
        self,
        *,
        client: redis.asyncio.Redis,
        ttl_seconds: int,
        lock_ttl_seconds: float = 30.0,
        lock_wait_seconds: float = 15.0,
        namespace: str = "hera",
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", namespace):
            # A brace would become the hash tag; glob characters would break iter_ids' MATCH.
            raise ValueError("namespace may hold only letters, digits, '_', '.', ':' and '-'")
        if ttl_seconds <= 0 or lock_ttl_seconds <= 0:
            raise ValueError("ttl_seconds and lock_ttl_seconds must be positive")
        self._client = client
        self._ttl = int(ttl_seconds)
        self._lock_ttl = lock_ttl_seconds
        self._wait = lock_wait_seconds
        self._ns = namespace
        self._write = client.register_script(_WRITE_LUA)
        self._read = client.register_script(_READ_LUA)

    def _base(self, session_id: str) -> str:
        return f"{self._ns}:{{{check_session_id(session_id)}}}"

    def _keys(self, session_id: str) -> list[str]:
        base = self._base(session_id)
        return [f"{base}:{part}" for part in _KEYS]

    async def _run_write(self, session_id: str, op: str, part: str, payload: list[str]) -> int:
        stamp = utcnow().isoformat(timespec="microseconds")  # fixed width: flat append bytes
        args: list[str | int] = [self._ttl, stamp, op, _KEYS.index(part) + 1, *payload]
        result = int(await self._write(keys=self._keys(session_id), args=args))
        if result < 0:  # the script's "meta key missing"
            raise SessionNotFound(session_id)
        return result

    @_guarded
    async def create(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> SessionMeta:
        meta = SessionMeta.new(session_id=session_id, created_at=created_at, owner_id=owner_id)
        items = [x for kv in meta_to_dict(meta).items() if kv[1] is not None for x in kv]
        key = f"{self._base(meta.session_id)}:meta"
        # Create-if-absent in one atomic step, so an import never overwrites a live session.
        created = await self._client.eval(_CREATE_SCRIPT, 1, key, self._ttl, *items)
        if not created:
            raise SessionExists(meta.session_id)
        return meta

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
        docs: Sequence[DocName] = DOC_NAMES,  # type: ignore[assignment]
        logs: Sequence[LogName] = (),
    ) -> SessionSnapshot:
        base = self._base(session_id)
        doc_names = [check_doc(d) for d in docs]
        log_names = [check_log(lg) for lg in logs]
        keys = [
            f"{base}:meta",
            *(f"{base}:doc:{name}" for name in doc_names),
            *(f"{base}:log:{name}" for name in log_names),
        ]
        # One script: one round trip and a consistent snapshot (no write lands in between).
        meta_raw, *rest = await self._read(keys=keys, args=[len(doc_names)])
        snap = SessionSnapshot(meta=self._meta(session_id, _pairs(meta_raw)))
        for name, flat in zip(doc_names, rest, strict=False):  # docs come first
            snap.docs[name] = {k.decode(): loads(v) for k, v in _pairs(flat).items()}
        for name, items in zip(log_names, rest[len(doc_names) :], strict=True):
            snap.logs[name] = loads_all(items)
        return snap

    @_guarded
    async def update(self, *, session_id: str, doc: DocName, fields: Mapping[str, Any]) -> None:
        payload: list[str] = []
        for name, value in check_fields(fields).items():
            payload += [name, "" if value is None else dumps(value)]
        await self._run_write(session_id, "update", f"doc:{check_doc(doc)}", payload)

    @_guarded
    async def append(self, *, session_id: str, log: LogName, entries: Sequence[JSONDict]) -> None:
        payload = [dumps(e) for e in check_entries(entries)]
        await self._run_write(session_id, "append", f"log:{check_log(log)}", payload)

    @_guarded
    async def log_length(self, *, session_id: str, log: LogName) -> int:
        base = self._base(session_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.exists(f"{base}:meta")
            pipe.llen(f"{base}:log:{check_log(log)}")  # checked before execute(): no I/O yet
            alive, length = await pipe.execute()
        if not alive:
            raise SessionNotFound(session_id)
        return int(length)

    def lock(
        self, *, session_id: str, wait: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        key = f"{self._base(session_id)}:lock"
        return self._locked(session_id, key, self._wait if wait is None else wait)

    @asynccontextmanager
    async def _locked(self, session_id: str, key: str, wait: float) -> AsyncIterator[None]:
        # A new Lock per use; thread_local=False so the heartbeat task sees the same token.
        lock = self._client.lock(
            key, timeout=self._lock_ttl, blocking_timeout=wait, thread_local=False
        )
        with _store_errors():
            acquired = await lock.acquire()
        if not acquired:
            raise SessionBusy(session_id)
        stop = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(lock, session_id, stop))
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            # A flag, not only cancel(): on 3.11 a cancel that lands while redis-py's own
            # wait_for completes is swallowed, and the heartbeat would renew forever.
            stop.set()
            try:
                while not heartbeat.done():
                    heartbeat.cancel()
                    await asyncio.wait({heartbeat}, timeout=0.05)
            finally:
                await self._release(lock, session_id, quiet=failed)

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
            except _TRANSIENT as exc:  # keep trying: up to two thirds of the TTL are left
                log.warning("could not extend lock of session %s: %r", session_id, exc)

    async def _release(self, lock: Lock, session_id: str, *, quiet: bool) -> None:
        try:
            with _store_errors():
                try:
                    await lock.release()
                except rx.LockNotOwnedError:
                    log.warning("lock of session %s expired before its turn ended", session_id)
                    if not quiet and await lock.locked():  # another turn ran meanwhile
                        raise LockLost(session_id) from None
        except StoreUnavailable as exc:  # the key expires by itself within one lock TTL
            log.warning("could not release lock of session %s: %s", session_id, exc)

    @_guarded
    async def delete(self, *, session_id: str) -> bool:
        # The lock key stays: a turn that deletes its own session must still release it.
        return bool(await self._client.unlink(*self._keys(session_id)))

    async def iter_ids(self) -> AsyncIterator[str]:
        # SCAN may return a key twice (rehashing); a set of ids is far smaller than sessions.
        seen: set[str] = set()
        with _store_errors():
            async for key in self._client.scan_iter(match=f"{self._ns}:{{*}}:meta", count=500):
                session_id = key.decode()[len(self._ns) + 2 : -len("}:meta")]
                if is_session_id(session_id) and session_id not in seen:
                    seen.add(session_id)
                    yield session_id

    @_guarded
    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()
