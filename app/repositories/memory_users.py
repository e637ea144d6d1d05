"""In-process user store: the fast fake for agent tests (one process only)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from ._checks import check_fields
from ._codec import merge_fields
from .base import JSONDict, utcnow
from .users import (
    MAX_TAGS,
    IndexName,
    Page,
    TooManyTags,
    check_index,
    check_owner_key,
    check_record_fields,
    page_of,
)


class MemoryUserRepository:
    def __init__(self) -> None:
        self._records: dict[str, JSONDict] = {}
        self._indexes: dict[tuple[str, str], dict[str, float]] = {}

    def _record(self, owner_key: str) -> JSONDict:
        now = utcnow().isoformat()
        return self._records.setdefault(
            check_owner_key(owner_key), {"tags": [], "created_at": now, "updated_at": now}
        )

    async def get(self, *, owner_key: str) -> JSONDict | None:
        return copy.deepcopy(self._records.get(check_owner_key(owner_key)))

    async def update(self, *, owner_key: str, fields: Mapping[str, Any]) -> JSONDict:
        check_record_fields(fields)
        record = self._record(owner_key)
        merged = merge_fields(record, copy.deepcopy(dict(fields)))
        merged["updated_at"] = utcnow().isoformat()
        self._records[owner_key] = merged
        return copy.deepcopy(merged)

    async def restore(self, *, owner_key: str, record: Mapping[str, Any]) -> bool:
        check_owner_key(owner_key)
        check_fields(record)
        if owner_key in self._records:
            return False
        self._records[owner_key] = {"tags": [], **copy.deepcopy(dict(record))}
        return True

    async def add_tag(self, *, owner_key: str, tag: str) -> list[str]:
        record = self._record(owner_key)
        if tag not in record["tags"]:
            if len(record["tags"]) >= MAX_TAGS:
                raise TooManyTags(owner_key)
            record["tags"].append(tag)
            record["updated_at"] = utcnow().isoformat()
        return list(record["tags"])

    async def remove_tag(self, *, owner_key: str, tag: str) -> list[str]:
        record = self._records.get(check_owner_key(owner_key), {"tags": []})
        if tag in record["tags"]:
            record["tags"].remove(tag)
            record["updated_at"] = utcnow().isoformat()
        return list(record["tags"])

    async def index_add(
        self, *, owner_key: str, index: IndexName, item_id: str, at: datetime
    ) -> None:
        key = (check_owner_key(owner_key), check_index(index))
        self._indexes.setdefault(key, {}).setdefault(item_id, at.timestamp())

    async def index_remove(self, *, owner_key: str, index: IndexName, item_id: str) -> bool:
        entries = self._indexes.get((check_owner_key(owner_key), check_index(index)), {})
        return entries.pop(item_id, None) is not None

    async def index_page(
        self, *, owner_key: str, index: IndexName, limit: int, cursor: str | None = None
    ) -> Page:
        key = (check_owner_key(owner_key), check_index(index))
        return page_of(self._indexes.get(key, {}), limit, cursor)

    async def delete(self, *, owner_key: str) -> bool:
        found = self._records.pop(check_owner_key(owner_key), None) is not None
        for key in [k for k in self._indexes if k[0] == owner_key]:
            found = bool(self._indexes.pop(key)) or found
        return found

    async def iter_owners(self) -> AsyncIterator[str]:
        owners = {*self._records, *(k[0] for k, v in self._indexes.items() if v)}
        for owner in sorted(owners):
            yield owner

    async def durability(self) -> str:
        return "none"  # process memory

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
