"""The durable tier's port: a person's record and the indexes of their sessions and
keepsakes. Nothing here expires (sessions do; what a person keeps does not).

Semantics every adapter meets (tests/contract/test_user_contract.py proves each):
- owner keys are 32 lower-case hex characters (`owner_key(sub)`), so no token subject can
  ever become a path or a key of its own; anything else raises InvalidId before any I/O.
- `update` merges top-level fields into the record (None deletes one), creating it; it sets
  `created_at` once and `updated_at` on every change; concurrent updates of different fields
  all land (each is one atomic step). `tags`, `created_at` and `updated_at` are the store's
  own (ValueError), as is any value that is not JSON.
- `add_tag` keeps tags in the order they were first added, without duplicates, and refuses
  the MAX_TAGS + 1st (TooManyTags); `remove_tag` drops one. Both are atomic.
- an index maps item ids (session ids) to a time; `index_add` of a listed id changes
  nothing; `index_page` lists newest first (ties: item id), `limit` at a time, with an opaque
  cursor for the next page (None after the last); a cursor it never made is BadCursor.
- `restore` writes a record exactly as given (migrations), only where there is none (a
  record without `tags` gets none).
- removing what is not there stores nothing: a person with nothing stored stays unknown.
- `delete` removes the record, the tags and every index of the person; `iter_owners`
  streams the owner keys of every person with anything stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, get_args, runtime_checkable

from app.repositories._checks import check_fields
from app.repositories.base import InvalidId, JSONDict, RepositoryError

IndexName = Literal["sessions", "keepsakes"]
INDEX_NAMES: Final[tuple[IndexName, ...]] = get_args(IndexName)
MAX_TAGS: Final = 50
_OWNER_KEY = re.compile(r"[0-9a-f]{32}")


class TooManyTags(RepositoryError):
    """The person already has MAX_TAGS tags."""


class BadCursor(InvalidId):
    """A cursor this list never handed out."""


def owner_key(subject: str) -> str:
    """The storage key of a token subject: a hash, never the subject itself."""
    # surrogatepass: a lone surrogate in a signed `sub` is still one subject, never a 500.
    data = f"hera-owner\0{subject}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]


def is_owner_key(key: str) -> bool:
    return isinstance(key, str) and bool(_OWNER_KEY.fullmatch(key))


def check_owner_key(key: str) -> str:
    if not is_owner_key(key):
        raise InvalidId("owner key must be 32 lower-case hex characters")
    return key


KEPT_BY_THE_STORE: Final = frozenset({"tags", "created_at", "updated_at"})


def check_record_fields(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """Fields `update` may set: storable JSON, never what the store keeps itself."""
    if kept := KEPT_BY_THE_STORE.intersection(fields):
        raise ValueError(f"{', '.join(sorted(kept))} is kept by the store")
    return check_fields(fields)


def check_index(name: str) -> IndexName:
    for index in INDEX_NAMES:
        if name == index:
            return index
    raise InvalidId(f"unknown index {name!r}")


@dataclass(frozen=True)
class IndexEntry:
    item_id: str
    at: datetime


@dataclass(frozen=True)
class Page:
    entries: list[IndexEntry]
    next_cursor: str | None


def page_of(index: Mapping[str, float], limit: int, cursor: str | None) -> Page:
    """One page of an index (item id -> Unix time), newest first; the cursor names the last
    entry of the previous page."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    ordered = sorted(index.items(), key=lambda item: (-item[1], item[0]))
    if cursor is not None:
        at, item_id = _decode(cursor)
        ordered = [(i, t) for i, t in ordered if (-t, i) > (-at, item_id)]
    chosen = ordered[:limit]
    entries = [IndexEntry(i, datetime.fromtimestamp(t, UTC)) for i, t in chosen]
    more = len(ordered) > limit
    return Page(entries, _encode(chosen[-1][1], chosen[-1][0]) if more else None)


def _encode(at: float, item_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, item_id]).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[float, str]:
    try:
        at, item_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not math.isfinite(float(at)) or not isinstance(item_id, str):
            raise ValueError("not a time and an id")
        return float(at), item_id
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor("not a cursor of this list") from exc


@runtime_checkable
class UserRepository(Protocol):
    async def get(self, *, owner_key: str) -> JSONDict | None:
        """The record (with `tags`, `created_at`, `updated_at`), or None."""
        ...

    async def update(self, *, owner_key: str, fields: Mapping[str, Any]) -> JSONDict: ...

    async def restore(self, *, owner_key: str, record: Mapping[str, Any]) -> bool:
        """Write a whole record as another store kept it (tags and timestamps included), for
        migrations; False, and nothing written, when the person has a record already."""
        ...

    async def add_tag(self, *, owner_key: str, tag: str) -> list[str]: ...

    async def remove_tag(self, *, owner_key: str, tag: str) -> list[str]: ...

    async def index_add(
        self, *, owner_key: str, index: IndexName, item_id: str, at: datetime
    ) -> None: ...

    async def index_remove(self, *, owner_key: str, index: IndexName, item_id: str) -> bool: ...

    async def index_page(
        self, *, owner_key: str, index: IndexName, limit: int, cursor: str | None = None
    ) -> Page: ...

    async def delete(self, *, owner_key: str) -> bool: ...

    def iter_owners(self) -> AsyncIterator[str]: ...

    async def durability(self) -> str:
        """Whether records survive a restart of the store: "disk", "aof", "rdb", "none"
        (memory only), or "unknown"."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...
