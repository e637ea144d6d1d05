"""People in Redis: `<ns>:user:{<owner key>}:record` hash (field -> JSON), `:tags` sorted set
(scored 1, 2, ... in the order each was added), `:idx:<name>` hashes (item id -> Unix time). No TTL.

Every key of one person shares the `{<owner key>}` hash tag, so each change is one script in
one slot (on Cluster too), and never in the same script as a session's keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Final

from ._checks import check_fields
from ._codec import dumps, loads
from ._redis import Lua, RedisClient, guarded, pairs, store_errors
from .base import JSONDict, utcnow
from .users import (
    INDEX_NAMES,
    MAX_TAGS,
    IndexName,
    Page,
    TooManyTags,
    check_index,
    check_owner_key,
    check_record_fields,
    is_owner_key,
    page_of,
)

# KEYS = record, tags. ARGV = now (JSON), then field/value pairs ('' value = HDEL).
_UPDATE_LUA: Final = """
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1)}
"""
# KEYS = record, tags. ARGV = now (JSON), tag, max tags. -1: too many tags. A new tag scores
# one past the last (never a client's clock), so tags keep the order they were first added.
_ADD_TAG_LUA: Final = """
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local score = 1
  if last[2] then score = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[2], score, ARGV[2])
  redis.call('HSETNX', KEYS[1], 'created_at', ARGV[1])
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
end
return redis.call('ZRANGE', KEYS[2], 0, -1)
"""
_REMOVE_TAG_LUA: Final = """
if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
end
return redis.call('ZRANGE', KEYS[2], 0, -1)
"""
# KEYS = record, tags. ARGV = n, then n field/JSON pairs, then the tags in order (a count,
# not a separator: any text can be a field's name).
_RESTORE_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = 1 + 2 * tonumber(ARGV[1])
for i = 2, last, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for j = last + 1, #ARGV do redis.call('ZADD', KEYS[2], j - last, ARGV[j]) end
return 1
"""
_GET_LUA: Final = """
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1)}
"""


_guarded = guarded("users")


class RedisUserRepository:
    def __init__(
        self, *, client: RedisClient, namespace: str = "hera", owns_client: bool = True
    ) -> None:
        """`owns_client=False`: the client is shared (the app's one per process) and its
        owner closes it; `aclose` then leaves it open."""
        self._client = client
        self._owns_client = owns_client
        self._ns = namespace
        self._update = Lua(client, _UPDATE_LUA)
        self._add_tag = Lua(client, _ADD_TAG_LUA)
        self._remove_tag = Lua(client, _REMOVE_TAG_LUA)
        self._get = Lua(client, _GET_LUA)
        self._restore = Lua(client, _RESTORE_LUA)

    def _key(self, owner_key: str, part: str) -> str:
        return f"{self._ns}:user:{{{check_owner_key(owner_key)}}}:{part}"

    def _record_keys(self, owner_key: str) -> list[str]:
        return [self._key(owner_key, "record"), self._key(owner_key, "tags")]

    @staticmethod
    def _record(flat: list[bytes], tags: list[bytes]) -> JSONDict | None:
        if not flat and not tags:
            return None
        record: JSONDict = {k.decode(): loads(v) for k, v in pairs(flat).items()}
        record["tags"] = [t.decode() for t in tags]
        return record

    @_guarded
    async def get(self, *, owner_key: str) -> JSONDict | None:
        flat, tags = await self._get(keys=self._record_keys(owner_key))
        return self._record(flat, tags)

    @_guarded
    async def update(self, *, owner_key: str, fields: Mapping[str, Any]) -> JSONDict:
        args: list[str] = [dumps(utcnow().isoformat())]
        for name, value in check_record_fields(fields).items():
            args += [name, "" if value is None else dumps(value)]
        flat, tags = await self._update(keys=self._record_keys(owner_key), args=args)
        record = self._record(flat, tags)
        assert record is not None  # the script wrote the timestamps
        return record

    @_guarded
    async def restore(self, *, owner_key: str, record: Mapping[str, Any]) -> bool:
        fields = {k: v for k, v in check_fields(record).items() if k != "tags"}
        args: list[str | int] = [len(fields)]
        for name, value in fields.items():
            args += [name, dumps(value)]
        args += [str(t) for t in record.get("tags") or []]
        return bool(await self._restore(keys=self._record_keys(owner_key), args=args))

    @_guarded
    async def add_tag(self, *, owner_key: str, tag: str) -> list[str]:
        now = dumps(utcnow().isoformat())
        got = await self._add_tag(keys=self._record_keys(owner_key), args=[now, tag, MAX_TAGS])
        if got == -1:
            raise TooManyTags(owner_key)
        return [t.decode() for t in got]

    @_guarded
    async def remove_tag(self, *, owner_key: str, tag: str) -> list[str]:
        now = dumps(utcnow().isoformat())
        got = await self._remove_tag(keys=self._record_keys(owner_key), args=[now, tag])
        return [t.decode() for t in got]

    @_guarded
    async def index_add(
        self, *, owner_key: str, index: IndexName, item_id: str, at: datetime
    ) -> None:
        key = self._key(owner_key, f"idx:{check_index(index)}")
        await self._client.hsetnx(key, item_id, repr(at.timestamp()))

    @_guarded
    async def index_remove(self, *, owner_key: str, index: IndexName, item_id: str) -> bool:
        key = self._key(owner_key, f"idx:{check_index(index)}")
        return bool(await self._client.hdel(key, item_id))

    @_guarded
    async def index_page(
        self, *, owner_key: str, index: IndexName, limit: int, cursor: str | None = None
    ) -> Page:
        key = self._key(owner_key, f"idx:{check_index(index)}")
        raw = await self._client.hgetall(key)
        return page_of({_text(k): float(v) for k, v in raw.items()}, limit, cursor)

    @_guarded
    async def delete(self, *, owner_key: str) -> bool:
        parts = ["record", "tags", *(f"idx:{name}" for name in INDEX_NAMES)]
        return bool(await self._client.unlink(*(self._key(owner_key, p) for p in parts)))

    async def iter_owners(self) -> AsyncIterator[str]:
        seen: set[str] = set()
        prefix = f"{self._ns}:user:{{"
        with store_errors("users"):
            async for key in self._client.scan_iter(match=f"{self._ns}:user:{{*}}:*", count=500):
                owner = _text(key)[len(prefix) : len(prefix) + 32]
                if is_owner_key(owner) and owner not in seen:
                    seen.add(owner)
                    yield owner

    async def durability(self) -> str:
        """How Redis keeps data across its restart: "aof", "rdb", "none", or "unknown"
        (managed Redis often refuses CONFIG)."""
        try:
            config = await self._client.config_get("appendonly")
            config.update(await self._client.config_get("save"))
        except Exception:
            return "unknown"
        values = {_text(k or ""): _text(v or "") for k, v in config.items()}
        if values.get("appendonly") == "yes":
            return "aof"
        return "rdb" if values.get("save", "").strip() else "none"

    @_guarded
    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
