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
from typing import Any, Final, Literal, Protocol, get_args, runtime_checkable

JSONDict = dict[str, Any]

# The named parts of a session. Documents are JSON objects updated field by field; logs are
# append-only lists of JSON objects. Nothing else can be addressed, so a part name taken from
# anywhere can never become a path or a key of its own.
DocName = Literal["profile", "family", "images", "state"]
LogName = Literal["history", "family_history"]
DOC_NAMES: Final[tuple[DocName, ...]] = get_args(DocName)
LOG_NAMES: Final[tuple[LogName, ...]] = get_args(LogName)


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
    """Another turn holds the session's lock and did not release it in time.

    `same_request` is True when that holder took the lock with the same `tag` as the waiter
    (a retry of a request that is still running)."""

    def __init__(self, session_id: str, *, same_request: bool = False) -> None:
        super().__init__(session_id)
        self.same_request = same_request


class LockLost(RepositoryError):
    """A fenced commit found the lock expired or taken over: nothing was written."""


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


def person_blob_prefix(owner_key: str) -> str:
    """Where one person's durable blobs (keepsakes) live: `users/<owner key>/`."""
    return check_blob_prefix(f"users/{owner_key}/")


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
    request_key: str | None = None  # the `create_once` key that made it (forgotten with it)

    @classmethod
    def new(
        cls,
        *,
        session_id: str | None,
        created_at: datetime | None,
        owner_id: str | None,
        request_key: str | None = None,
    ) -> SessionMeta:
        """What `create` stores: the given (checked) id or a fresh one, written now; an
        import keeps its original `created_at`."""
        now = utcnow()
        sid = check_session_id(session_id) if session_id else new_session_id()
        key = check_request_key(request_key) if request_key is not None else None
        return cls(sid, created_at or now, now, owner_id, key)


@dataclass(slots=True)
class SessionSnapshot:
    """What `load` returns: copies, never live references into a store. `request` is the
    record stored under the `request_key` that `load` was asked for (None: none stored)."""

    meta: SessionMeta
    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)
    request: JSONDict | None = None

    def doc(self, name: DocName) -> JSONDict:
        return self.docs.get(name, {})

    def log(self, name: LogName) -> list[JSONDict]:
        return self.logs.get(name, [])


_REQUEST_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_request_key(key: str) -> str:
    """A request (idempotency) key: 1-64 of [A-Za-z0-9_-], safe as a field or a file name."""
    if not isinstance(key, str) or not _REQUEST_KEY_RE.match(key):
        raise InvalidId("request key must be 1-64 of A-Z, a-z, 0-9, '_' and '-'")
    return key


@dataclass(slots=True)
class Changes:
    """One unit of work: everything a turn changes, committed in one atomic step.

    `docs` holds top-level field updates per document (None deletes a field), `logs` the
    entries appended per log, `requests` the records of the requests this commit answers
    (idempotency), stored with the session and read back by `load(request_key=...)`.
    `owner_id` (when set) gives the session to a person; such a commit changes nothing else.
    """

    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)
    requests: dict[str, JSONDict] = field(default_factory=dict)
    owner_id: str | None = None

    def update(self, doc: DocName, fields: Mapping[str, Any]) -> Changes:
        self.docs.setdefault(doc, {}).update(fields)
        return self

    def append(self, log: LogName, entries: Sequence[JSONDict]) -> Changes:
        self.logs.setdefault(log, []).extend(entries)
        return self

    def remember(self, key: str, record: JSONDict) -> Changes:
        self.requests[check_request_key(key)] = record
        return self

    def __bool__(self) -> bool:
        return bool(self.docs or self.logs or self.requests or self.owner_id)


@runtime_checkable
class Lease(Protocol):
    """Proof of holding a session's lock, handed to `commit` as its fence."""

    @property
    def session_id(self) -> str: ...

    @property
    def token(self) -> str: ...


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
    """Sessions: metadata, JSON documents, append-only logs, request records, a lock.

    Semantics every adapter meets (the contract suite proves each):
    - ids are canonical UUID4 strings; anything else raises InvalidId before any I/O.
    - a session lives `ttl` seconds after its last write; every write refreshes the expiry
      of all its parts together. An expired session behaves exactly like a deleted one.
    - reads and writes of a missing session raise SessionNotFound (writes never resurrect).
    - `commit` applies one `Changes` atomically: every part or none, even when the process
      dies in the middle. Document updates merge top-level fields (None deletes a field) and
      leave other fields and parts alone; log entries are added at the end in order, at a
      cost independent of the log's length. Given a `lease`, the commit is fenced: when that
      lease is no longer the lock's holder (expired, taken over, released) it raises
      LockLost and writes nothing, checked inside the same atomic step.
    - `load(request_key=k)` also returns the record a commit stored under `k`; records
      live and expire with their session.
    - `lock` is exclusive across tasks, processes and machines and yields a Lease. It waits
      at most `wait` seconds (default from settings), then raises SessionBusy (with
      `same_request` when the holder locked with the same `tag`). A holder that dies frees
      the lock when its expiry passes; a live holder keeps it alive for as long as it runs.
    - `create_once(request_key=k)` is idempotent per `k`: for `ttl` seconds after the first
      call, while that session lives, a call with the same key returns the first session's
      meta and the first call's fingerprint (a window for retries, as for any request key).
    - `delete` removes every part, and the `create_once` key that made the session (a later
      call with that key makes a new session; nothing names the deleted id any more); it
      also removes what an expired session left (files); returns False when no live session
      was there.
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

    async def create_once(
        self, *, request_key: str, fingerprint: str, owner_id: str | None = None
    ) -> tuple[SessionMeta, str | None]:
        """Create a session for a request key, or find the live one it created before.

        Returns the meta and, for a repeat, the fingerprint the key was first used with
        (None when this call created the session). A key answers for `ttl` seconds."""
        ...

    async def exists(self, *, session_id: str) -> bool: ...

    async def get_meta(self, *, session_id: str) -> SessionMeta: ...

    async def load(
        self,
        *,
        session_id: str,
        docs: Sequence[DocName] = ...,
        logs: Sequence[LogName] = ...,
        request_key: str | None = None,
    ) -> SessionSnapshot: ...

    async def commit(
        self, *, session_id: str, changes: Changes, lease: Lease | None = None
    ) -> None: ...

    def lock(
        self, *, session_id: str, wait: float | None = None, tag: str | None = None
    ) -> AbstractAsyncContextManager[Lease]: ...

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
