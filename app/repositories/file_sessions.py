"""Sessions as files: one folder per session, one JSON file per document, JSONL logs.

Layout under the root:  <id>/meta.json  <id>/<doc>.json  <id>/<log>.jsonl  .locks/<id>.lock
Documents and meta are replaced atomically (temp file + fsync + os.replace); a log append is a
single write of the new lines, so its cost is independent of the log's length. A short flock on
`<id>/.write` serialises writers of one session across processes, and that file's mtime is the
session's `updated_at` (touching it costs no data write).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ._checks import check_doc, check_entries, check_fields, check_log
from ._codec import dumps, loads, loads_lines, merge_fields, meta_from_dict, meta_to_dict
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
    StoreUnavailable,
    check_session_id,
    is_session_id,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_POLL_SECONDS = 0.02
_READ_SIZE = 64 * 1024


def write_atomic(path: Path, data: bytes) -> None:
    """Write a whole file so a crash leaves either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # The data is on disk before the rename, so the name points at a whole file either
        # way. The directory is not fsynced: after a power cut the old version may be back,
        # which the contract allows ("old or new state"), and it saves a flush per write.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_small(path: Path | str) -> bytes:
    """A whole (small) file: open, one read, close. Each system call here releases and
    retakes the GIL, a costly hand-over when the event loop is busy, so there is no fstat: a
    64 KiB read covers every session file but a long log, which reads on to the end. A read
    shorter than asked is taken as the end of the file, as POSIX promises for regular files
    on local file systems (the README's HERA_DATA_DIR row asks for one)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:
            chunks = [data]
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[JSONDict]:
    try:
        raw = read_small(path)
    except FileNotFoundError:
        return []
    whole = loads_lines(raw)
    if whole is not None and all(isinstance(e, dict) for e in whole):
        return whole  # the common case: every line whole, parsed in one go
    entries: list[JSONDict] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append(loads(line))
        except ValueError:
            # Only a crash in the middle of an append can leave a torn line; skip it.
            log.warning("skipping unreadable line %d of %s", number, path.name)
    return entries


class FileSessionRepository:
    def __init__(
        self,
        *,
        root: Path,
        ttl_seconds: int = 86400,
        lock_wait_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = root.resolve()
        self._ttl = ttl_seconds
        self._wait = lock_wait_seconds
        self._clock = clock
        (self._root / ".locks").mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- paths and helpers
    def _dir(self, session_id: str) -> Path:
        # check_session_id admits only a canonical UUID, so the path cannot leave the root.
        return self._root / check_session_id(session_id)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except (FileNotFoundError, NotADirectoryError) as exc:
            # Only a session folder can vanish under us (deleted or pruned meanwhile).
            raise SessionNotFound(str(exc.filename or "")) from exc
        except OSError as exc:
            raise StoreUnavailable("sessions", type(exc).__name__) from exc

    def _read_meta(self, folder: Path) -> SessionMeta:
        try:
            meta = meta_from_dict(loads(read_small(folder / "meta.json")))
        except (FileNotFoundError, NotADirectoryError):
            raise SessionNotFound(folder.name) from None
        try:
            touched = datetime.fromtimestamp((folder / ".write").stat().st_mtime, UTC)
            meta = SessionMeta(meta.session_id, meta.created_at, touched, meta.owner_id)
        except FileNotFoundError:
            pass  # imported sessions carry updated_at in meta.json only
        expires = meta.updated_at + timedelta(seconds=self._ttl)
        if expires.timestamp() <= self._clock():
            raise SessionNotFound(folder.name)
        return meta

    @contextlib.contextmanager
    def _writing(self, folder: Path) -> Iterator[SessionMeta]:
        """Hold the session's write flock, check it is live, then refresh its meta."""
        try:
            fd = os.open(folder / ".write", os.O_RDWR | os.O_CREAT, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            raise SessionNotFound(folder.name) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            meta = self._read_meta(folder)
            yield meta
            os.utime(fd)
        finally:
            os.close(fd)

    # ---------------------------------------------------------------- port
    async def create(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> SessionMeta:
        meta = SessionMeta.new(session_id=session_id, created_at=created_at, owner_id=owner_id)
        sid = meta.session_id

        def _create() -> None:
            folder = self._dir(sid)
            try:
                folder.mkdir(mode=0o700)  # atomic: exactly one creator wins
            except FileExistsError:
                try:
                    self._read_meta(folder)
                except SessionNotFound:
                    shutil.rmtree(folder, ignore_errors=True)  # expired leftovers
                    folder.mkdir(mode=0o700)
                else:
                    raise SessionExists(sid) from None
            write_atomic(folder / "meta.json", dumps(meta_to_dict(meta)).encode())
            (folder / ".write").touch(mode=0o600)

        await self._run(_create)
        return meta

    async def exists(self, *, session_id: str) -> bool:
        try:
            await self.get_meta(session_id=session_id)
        except SessionNotFound:
            return False
        return True

    async def get_meta(self, *, session_id: str) -> SessionMeta:
        return await self._run(self._read_meta, self._dir(session_id))

    async def load(
        self,
        *,
        session_id: str,
        docs: Sequence[DocName] = DOC_NAMES,  # type: ignore[assignment]
        logs: Sequence[LogName] = (),
    ) -> SessionSnapshot:
        folder = self._dir(session_id)
        doc_names = [check_doc(d) for d in docs]
        log_names = [check_log(lg) for lg in logs]

        def _load() -> SessionSnapshot:
            meta = self._read_meta(folder)
            snap = SessionSnapshot(meta=meta)
            for name in doc_names:
                try:
                    snap.docs[name] = loads(read_small(folder / f"{name}.json"))
                except FileNotFoundError:
                    snap.docs[name] = {}
            for name in log_names:
                snap.logs[name] = read_jsonl(folder / f"{name}.jsonl")
            return snap

        return await self._run(_load)

    async def update(self, *, session_id: str, doc: DocName, fields: Mapping[str, Any]) -> None:
        folder = self._dir(session_id)
        path = folder / f"{check_doc(doc)}.json"
        payload = dict(check_fields(fields))

        def _update() -> None:
            with self._writing(folder):
                try:
                    current = loads(read_small(path))
                except FileNotFoundError:
                    current = {}
                write_atomic(path, dumps(merge_fields(current, payload)).encode())

        await self._run(_update)

    async def append(self, *, session_id: str, log: LogName, entries: Sequence[JSONDict]) -> None:
        folder = self._dir(session_id)
        path = folder / f"{check_log(log)}.jsonl"
        data = "".join(dumps(e) + "\n" for e in check_entries(entries)).encode()

        def _append() -> None:
            with self._writing(folder):
                # One O_APPEND write: another process or a killed writer never tears it.
                # No fsync: a power cut may drop the newest lines (a torn tail is skipped
                # on read), and it would cost a journal flush on every chat message.
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)

        await self._run(_append)

    async def log_length(self, *, session_id: str, log: LogName) -> int:
        folder = self._dir(session_id)
        name = check_log(log)

        def _length() -> int:
            self._read_meta(folder)
            return len(read_jsonl(folder / f"{name}.jsonl"))

        return await self._run(_length)

    def lock(
        self, *, session_id: str, wait: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        return self._locked(check_session_id(session_id), self._wait if wait is None else wait)

    @asynccontextmanager
    async def _locked(self, session_id: str, wait: float) -> AsyncIterator[None]:
        # flock is tied to this open file description: another task, process or a crashed
        # holder's successor is excluded, and the kernel frees it when the holder dies.
        path = self._root / ".locks" / f"{session_id}.lock"

        def _open() -> int:
            # No lock file for a session that does not exist (no inode per random id).
            if not (self._root / session_id / "meta.json").exists():
                raise SessionNotFound(session_id)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

        # Creating the file is disk I/O (a journal write the first time): keep it off the loop.
        fd = await self._run(_open)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise SessionBusy(session_id) from None
                    await asyncio.sleep(_POLL_SECONDS)
            yield
        finally:
            os.close(fd)

    async def delete(self, *, session_id: str) -> bool:
        folder = self._dir(session_id)

        def _delete() -> bool:
            trash = self._root / f".trash-{folder.name}-{uuid.uuid4().hex}"
            try:
                alive = True
                try:
                    self._read_meta(folder)
                except SessionNotFound:
                    alive = False
                folder.rename(trash)  # the session vanishes in one step
            except FileNotFoundError:
                return False
            shutil.rmtree(trash, ignore_errors=True)
            (self._root / ".locks" / f"{folder.name}.lock").unlink(missing_ok=True)
            return alive

        return await self._run(_delete)

    async def iter_ids(self) -> AsyncIterator[str]:
        # Directory iteration in batches, each read off the loop: streams, never loads all.
        entries = await self._run(os.scandir, self._root)
        try:
            while batch := await self._run(lambda: list(itertools.islice(entries, 500))):
                for entry in batch:
                    if is_session_id(entry.name) and await self.exists(session_id=entry.name):
                        yield entry.name
        finally:
            entries.close()

    async def prune_expired(self, *, dry_run: bool = False) -> list[str]:
        """Remove the folders (and lock files) of expired sessions; return their ids.

        Expired sessions already read as deleted; this reclaims their disk space. A folder
        without meta.json is a `create` in progress (or one a crash interrupted): it is only
        removed once it is older than the TTL. Each check runs under the session's write
        flock, so no write lands in a folder while it is being removed.
        """

        def _expired(folder: Path) -> bool:
            try:
                self._read_meta(folder)
            except SessionNotFound:
                if (folder / "meta.json").exists():
                    return True
                return folder.stat().st_mtime + self._ttl <= self._clock()
            except (ValueError, KeyError):  # unreadable meta: never guess, leave it to a human
                log.warning("session %s has an unreadable meta.json; not pruned", folder.name)
            return False

        def _prune() -> list[str]:
            with os.scandir(self._root) as entries:
                names = sorted(e.name for e in entries if is_session_id(e.name) and e.is_dir())
            pruned: list[str] = []
            for name in names:
                folder = self._root / name
                fd: int | None = None
                with contextlib.suppress(FileNotFoundError):
                    # Not O_CREAT: a new `.write` would make the session look just written.
                    fd = os.open(folder / ".write", os.O_RDWR)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if not folder.is_dir() or not _expired(folder):
                        continue
                    if not dry_run:
                        trash = self._root / f".trash-{name}-{uuid.uuid4().hex}"
                        folder.rename(trash)  # the session vanishes in one step
                        shutil.rmtree(trash, ignore_errors=True)
                        (self._root / ".locks" / f"{name}.lock").unlink(missing_ok=True)
                    pruned.append(name)
                except FileNotFoundError:
                    continue  # deleted by someone else meanwhile
                finally:
                    if fd is not None:
                        os.close(fd)
            return pruned

        return await self._run(_prune)

    async def ping(self) -> None:
        def _ping() -> None:
            if not os.access(self._root, os.W_OK):
                raise StoreUnavailable("sessions", "data directory is not writable")

        await self._run(_ping)

    async def aclose(self) -> None:
        return None
