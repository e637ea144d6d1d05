"""The two storage ports, their records and errors.

Every method is async and keyword-scoped. Adapters translate backend exceptions into the
errors below (``raise StoreUnavailable(...) from exc``); nothing backend-specific leaks out.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

JSONDict = dict[str, Any]

# The named parts of a session. Documents are JSON objects updated field by field; logs are
# append-only lists of JSON objects. Nothing else can be addressed, so a part name taken from
# anywhere can never become a path or a key of its own.
DocName = Literal["profile", "family", "images", "state"]
LogName = Literal["history", "family_history"]
DOC_NAMES: Final[tuple[str, ...]] = ("profile", "family", "images", "state")
LOG_NAMES: Final[tuple[str, ...]] = ("history", "family_history")


# --------------------------------------------------------------------------------- errors
class RepositoryError(Exception):
    """Base of every storage error."""


class StoreUnavailable(RepositoryError):
    """The backend cannot be reached or answered with a transient failure."""

    def __init__(self, store: str, detail: str = "") -> None:
        super().__init__(f"{store} store unavailable" + (f": {detail}" if detail else ""))
        self.store = store


class InvalidId(RepositoryError):
    """A session id, part name or blob key that is not allowed (never reaches a backend)."""


class SessionNotFound(RepositoryError):
    """No live session with that id (never created, deleted, or expired)."""


class SessionExists(RepositoryError):
    """`create` was given an id that is already live (imports and migrations)."""


class SessionBusy(RepositoryError):
    """Another turn holds the session's lock and did not release it in time."""


class LockLost(RepositoryError):
    """The lock expired or was taken over while the holder still worked."""


class BlobNotFound(RepositoryError):
    """No blob under that key."""


# --------------------------------------------------------------------------------- ids
_UUID_RE: Final = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
_SEGMENT_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def new_session_id() -> str:
    return str(uuid.uuid4())


def is_session_id(value: str) -> bool:
    """True only for a canonical (lower-case, hyphenated) UUID4 string."""
    return bool(_UUID_RE.match(value))


def check_session_id(value: str) -> str:
    if not isinstance(value, str) or not is_session_id(value):
        raise InvalidId("session id must be a canonical UUID4")
    return value


def check_blob_key(key: str) -> str:
    """A relative key of safe segments: no '..', no empty segment, no absolute path, no NUL."""
    if not isinstance(key, str) or not key or len(key) > 512:
        raise InvalidId("blob key must be a non-empty string of at most 512 characters")
    segments = key.split("/")
    if any(not _SEGMENT_RE.match(s) or ".." in s for s in segments):
        raise InvalidId("blob key segments may hold only letters, digits, '.', '_' and '-'")
    return key


def check_blob_prefix(prefix: str) -> str:
    """A prefix is a key that ends with '/' (listing and deleting whole folders only)."""
    if not prefix.endswith("/"):
        raise InvalidId("blob prefix must end with '/'")
    check_blob_key(prefix[:-1])
    return prefix


def session_blob_prefix(session_id: str) -> str:
    return f"sessions/{check_session_id(session_id)}/"


def session_blob_key(session_id: str, name: str) -> str:
    return check_blob_key(session_blob_prefix(session_id) + name)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class SessionMeta:
    session_id: str
    created_at: datetime
    updated_at: datetime
    owner_id: str | None = None

    @classmethod
    def new(
        cls, *, session_id: str | None, created_at: datetime | None, owner_id: str | None
    ) -> SessionMeta:
        """What `create` stores: the given (checked) id or a fresh one, written now; an
        import keeps its original `created_at`."""
        now = utcnow()
        sid = check_session_id(session_id) if session_id else new_session_id()
        return cls(sid, created_at or now, now, owner_id)


@dataclass(slots=True)
class SessionSnapshot:
    """What `load` returns: copies, never live references into a store."""

    meta: SessionMeta
    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)

    def doc(self, name: DocName) -> JSONDict:
        return self.docs.get(name, {})

    def log(self, name: LogName) -> list[JSONDict]:
        return self.logs.get(name, [])


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    content_type: str
    etag: str
    updated_at: datetime | None = None


class BlobReader(Protocol):
    """An open blob: metadata plus a single-use stream of chunks. Close it when done."""

    info: BlobInfo

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------------- ports
@runtime_checkable
class SessionRepository(Protocol):
    """Sessions: metadata, JSON documents, append-only logs, a per-session lock.

    Semantics every adapter meets (the contract suite proves each):
    - ids are canonical UUID4 strings; anything else raises InvalidId before any I/O.
    - a session lives `ttl` seconds after its last write; every write refreshes the expiry
      of all its parts together. An expired session behaves exactly like a deleted one.
    - reads and writes of a missing session raise SessionNotFound (writes never resurrect).
    - `update` merges top-level fields into one document (None deletes a field) and leaves
      other fields and other parts untouched.
    - `append` adds entries at the end of a log in order; its cost does not depend on the
      log's length. Entries come back in insertion order.
    - `lock` is exclusive across tasks, processes and machines. It waits at most `wait`
      seconds (default from settings), then raises SessionBusy. A holder that dies frees
      the lock when its expiry passes; a live holder keeps it alive for as long as it runs.
    - `delete` removes every part; returns False when there was nothing to delete.
    - `iter_ids` streams ids without loading them all.
    """

    async def create(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> SessionMeta:
        """A new session; `session_id`/`created_at` are for imports (SessionExists if taken)."""
        ...

    async def exists(self, *, session_id: str) -> bool: ...

    async def get_meta(self, *, session_id: str) -> SessionMeta: ...

    async def load(
        self,
        *,
        session_id: str,
        docs: Sequence[DocName] = ...,
        logs: Sequence[LogName] = ...,
    ) -> SessionSnapshot: ...

    async def update(self, *, session_id: str, doc: DocName, fields: Mapping[str, Any]) -> None: ...

    async def append(
        self, *, session_id: str, log: LogName, entries: Sequence[JSONDict]
    ) -> None: ...

    async def log_length(self, *, session_id: str, log: LogName) -> int: ...

    def lock(
        self, *, session_id: str, wait: float | None = None
    ) -> AbstractAsyncContextManager[None]: ...

    async def delete(self, *, session_id: str) -> bool: ...

    def iter_ids(self) -> AsyncIterator[str]: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BlobRepository(Protocol):
    """Blobs (photos, generated images) under keys of safe segments.

    - keys are relative (`sessions/<id>/<name>`); the adapter adds BLOB_KEY_PREFIX and no
      key can escape it (InvalidId otherwise).
    - `put` accepts bytes or an async byte stream and overwrites; `open` streams in chunks
      and never loads the whole object; missing keys raise BlobNotFound.
    - `delete_prefix` removes every blob under a prefix ending in '/' and returns the count;
      `list` streams BlobInfo of that prefix in key order.
    - `presigned_url` returns a short-lived URL, or None when the store cannot sign.
    """

    name: str

    async def put(
        self, *, key: str, data: bytes | AsyncIterable[bytes], content_type: str
    ) -> BlobInfo: ...

    async def open(self, *, key: str) -> BlobReader: ...

    async def stat(self, *, key: str) -> BlobInfo: ...

    async def exists(self, *, key: str) -> bool: ...

    async def delete(self, *, key: str) -> bool: ...

    async def delete_prefix(self, *, prefix: str) -> int: ...

    def list(self, *, prefix: str) -> AsyncIterator[BlobInfo]: ...

    async def presigned_url(self, *, key: str, expires_in: int) -> str | None: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


async def read_all(reader: BlobReader) -> bytes:
    """Read a whole blob (small images only); always closes the reader."""
    try:
        return b"".join([chunk async for chunk in reader.chunks()])
    finally:
        await reader.aclose()
