"""Sessions as files: one folder per session, every change one line of its journal.

Layout under the root:
    <id>/meta.json       created once (id, timestamps, owner)
    <id>/journal.jsonl   one line per commit: {"d": doc field updates, "l": log entries,
                         "r": request records}; a load folds the lines in order
    <id>/.write          flocked by each commit; its mtime is the session's `updated_at`
    .locks/<id>.lock     the turn lock (flock), holding the holder's request tag
    .requests/<key>      which session a `create_once` key made

A commit is one `append_line` (a single write, synced), so a crash leaves the turn either
whole or absent: a torn last line does not parse and is skipped, and the next commit starts
on a fresh line. Sessions written by earlier versions keep their `<doc>.json` and
`<log>.jsonl` files as the base that the journal is folded onto.
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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio.to_thread

from ._checks import check_changes, check_doc, check_log
from ._codec import dumps, loads, merge_fields, meta_from_dict, meta_to_dict
from ._files import append_line, read_jsonl, read_small, write_atomic
from .base import (
    DOC_NAMES,
    Changes,
    DocName,
    InvalidId,
    JSONDict,
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
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_POLL_SECONDS = 0.02
_JOURNAL: Final = "journal.jsonl"
_LAYOUT: Final = "journal"  # meta.json marker of sessions that keep everything in the journal


@dataclass
class _FileLease:
    session_id: str
    token: str
    active: bool = True


class FileSessionRepository:
    def __init__(
        self,
        *,
        root: Path,
        ttl_seconds: int = 86400,
        lock_wait_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
        sync: bool = True,
    ) -> None:
        self._root = root.resolve()
        self._ttl = ttl_seconds
        self._wait = lock_wait_seconds
        self._clock = clock
        self._sync = sync
        (self._root / ".locks").mkdir(parents=True, exist_ok=True)
        (self._root / ".requests").mkdir(exist_ok=True)

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

    def _read_meta_raw(self, folder: Path) -> tuple[SessionMeta, bool]:
        """The live session's meta and whether it keeps everything in its journal."""
        try:
            raw = loads(read_small(folder / "meta.json"))
        except (FileNotFoundError, NotADirectoryError):
            raise SessionNotFound(folder.name) from None
        meta = meta_from_dict(raw)
        try:
            touched = datetime.fromtimestamp((folder / ".write").stat().st_mtime, UTC)
            meta = replace(meta, updated_at=touched)
        except FileNotFoundError:
            pass  # imported sessions carry updated_at in meta.json only
        expires = meta.updated_at + timedelta(seconds=self._ttl)
        if expires.timestamp() <= self._clock():
            raise SessionNotFound(folder.name)
        return meta, raw.get("layout") == _LAYOUT

    def _read_meta(self, folder: Path) -> SessionMeta:
        return self._read_meta_raw(folder)[0]

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
            now = self._clock()  # the same clock that judges expiry
            os.utime(fd, (now, now))
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
        await self._run(self._create, meta)
        return meta

    def _create(self, meta: SessionMeta) -> None:
        folder = self._dir(meta.session_id)
        try:
            folder.mkdir(mode=0o700)  # atomic: exactly one creator wins
        except FileExistsError:
            try:
                self._read_meta(folder)
            except SessionNotFound:
                shutil.rmtree(folder, ignore_errors=True)  # expired leftovers
                folder.mkdir(mode=0o700)
            else:
                raise SessionExists(meta.session_id) from None
        record = {**meta_to_dict(meta), "layout": _LAYOUT}
        write_atomic(folder / "meta.json", dumps(record).encode())
        (folder / ".write").touch(mode=0o600)
        now = self._clock()
        os.utime(folder / ".write", (now, now))

    async def create_once(
        self, *, request_key: str, fingerprint: str, owner_id: str | None = None
    ) -> tuple[SessionMeta, str | None]:
        claim = self._root / ".requests" / check_request_key(request_key)

        def _create_once() -> tuple[SessionMeta, str | None]:
            # The claim is a hard link to a whole file (atomic, never overwrites); the loser
            # of a race deletes the session it made and answers with the winner's.
            mine: SessionMeta | None = None
            tmp = claim.with_name(f".{claim.name}.{uuid.uuid4().hex}.tmp")
            try:
                for _ in range(4):
                    try:
                        if claim.stat().st_mtime + self._ttl <= self._clock():
                            raise SessionNotFound(claim.name)  # the key's window is over
                        earlier = loads(read_small(claim))
                        found = self._read_meta(self._dir(earlier["session_id"]))
                    except FileNotFoundError:
                        pass  # nobody claimed the key yet
                    except (SessionNotFound, InvalidId, KeyError, TypeError, ValueError):
                        claim.unlink(missing_ok=True)  # its session is gone: a stale claim
                    else:
                        if mine is not None:
                            self._delete(self._dir(mine.session_id))
                        return found, str(earlier.get("fp", ""))
                    if mine is None:
                        mine = SessionMeta.new(
                            session_id=None,
                            created_at=None,
                            owner_id=owner_id,
                            request_key=request_key,
                        )
                        self._create(mine)
                        record = {"session_id": mine.session_id, "fp": fingerprint}
                        tmp.write_bytes(dumps(record).encode())
                    try:
                        os.link(tmp, claim)
                        return mine, None
                    except FileExistsError:
                        continue
                raise StoreUnavailable("sessions", "request key kept changing hands")
            finally:
                tmp.unlink(missing_ok=True)

        return await self._run(_create_once)

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
        docs: Sequence[DocName] = DOC_NAMES,
        logs: Sequence[LogName] = (),
        request_key: str | None = None,
    ) -> SessionSnapshot:
        folder = self._dir(session_id)
        doc_names = [check_doc(d) for d in docs]
        log_names = [check_log(lg) for lg in logs]
        wanted = check_request_key(request_key) if request_key is not None else None

        def _load() -> SessionSnapshot:
            meta, journal_only = self._read_meta_raw(folder)
            snap = SessionSnapshot(meta=meta)
            for name in doc_names:
                snap.docs[name] = {} if journal_only else _read_doc(folder / f"{name}.json")
            for name in log_names:
                snap.logs[name] = [] if journal_only else read_jsonl(folder / f"{name}.jsonl")
            for record in read_jsonl(folder / _JOURNAL):
                _fold(snap, record, wanted)
            return snap

        return await self._run(_load)

    async def commit(
        self, *, session_id: str, changes: Changes, lease: Lease | None = None
    ) -> None:
        folder = self._dir(session_id)
        record: JSONDict = {}
        for short, part in (("d", changes.docs), ("l", changes.logs), ("r", changes.requests)):
            if part:
                record[short] = part
        check_changes(changes)
        line = (dumps(record) + "\n").encode()

        def _commit() -> None:
            with self._writing(folder):
                # The fence: a lease that was released (its turn ended or failed) or that
                # belongs to another session may not write. A live flock cannot be lost.
                if lease is not None and not (
                    isinstance(lease, _FileLease)
                    and lease.active
                    and lease.session_id == folder.name
                ):
                    raise LockLost(folder.name)
                if changes.owner_id is not None:  # the only change of its commit (checked)
                    raw = loads(read_small(folder / "meta.json"))
                    raw["owner_id"] = changes.owner_id
                    write_atomic(folder / "meta.json", dumps(raw).encode())
                    return
                append_line(folder / _JOURNAL, line, sync=self._sync)

        await self._run(_commit)

    def lock(
        self, *, session_id: str, wait: float | None = None, tag: str | None = None
    ) -> AbstractAsyncContextManager[Lease]:
        return self._locked(check_session_id(session_id), self._wait if wait is None else wait, tag)

    @asynccontextmanager
    async def _locked(self, session_id: str, wait: float, tag: str | None) -> AsyncIterator[Lease]:
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
        lease = _FileLease(session_id, uuid.uuid4().hex)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = await self._run(os.pread, fd, 64, 0) if tag else b""
                        same = tag is not None and holder == tag.encode()
                        raise SessionBusy(session_id, same_request=same) from None
                    await asyncio.sleep(_POLL_SECONDS)
            if tag:  # who holds it, for a waiter that gives up (a retry of this request?)
                await self._run(_write_tag, fd, tag.encode())
            try:
                yield lease
            finally:
                if tag:  # only the holder clears its tag; a waiter that gave up leaves it
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, 0)  # metadata only, no data to flush
        finally:
            lease.active = False
            os.close(fd)

    async def delete(self, *, session_id: str) -> bool:
        folder = self._dir(session_id)

        def _delete() -> bool:
            try:
                self._read_meta(folder)
                alive = True
            except SessionNotFound:
                alive = False  # expired: its files still go
            return self._delete(folder) and alive

        return await self._run(_delete)

    def _delete(self, folder: Path) -> bool:
        trash = self._root / f".trash-{folder.name}-{uuid.uuid4().hex}"
        try:
            folder.rename(trash)  # the session vanishes in one step
        except FileNotFoundError:
            return False
        self._forget_request(trash / "meta.json", folder.name)
        shutil.rmtree(trash, ignore_errors=True)
        (self._root / ".locks" / f"{folder.name}.lock").unlink(missing_ok=True)
        return True

    def _forget_request(self, meta_path: Path, session_id: str) -> None:
        """Remove the `create_once` claim that made this session, if it still names it."""
        try:
            key = loads(read_small(meta_path)).get("request_key")
            claim = self._root / ".requests" / check_request_key(str(key))
            named = loads(read_small(claim)).get("session_id") == session_id
        except (OSError, ValueError, AttributeError, InvalidId):
            return  # no key (or an unreadable one): nothing names the session
        if named:
            claim.unlink(missing_ok=True)

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
        flock, so no write lands in a folder while it is being removed. Request-key claims
        whose session is gone go too.
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
                        self._delete(folder)
                    pruned.append(name)
                except FileNotFoundError:
                    continue  # deleted by someone else meanwhile
                finally:
                    if fd is not None:
                        os.close(fd)
            if not dry_run:
                self._prune_claims()
            return pruned

        return await self._run(_prune)

    def _prune_claims(self) -> None:
        with os.scandir(self._root / ".requests") as entries:
            for entry in entries:
                try:
                    sid = loads(read_small(entry.path))["session_id"]
                    alive = is_session_id(sid) and (self._root / sid / "meta.json").exists()
                except (OSError, ValueError, KeyError, TypeError):
                    alive = False
                if not alive:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    async def ping(self) -> None:
        def _ping() -> None:
            if not os.access(self._root, os.W_OK):
                raise StoreUnavailable("sessions", "data directory is not writable")

        await self._run(_ping)

    async def aclose(self) -> None:
        return None


def _read_doc(path: Path) -> JSONDict:
    try:
        doc: JSONDict = loads(read_small(path))
    except FileNotFoundError:
        return {}
    return doc


def _write_tag(fd: int, tag: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, tag, 0)


def _fold(snap: SessionSnapshot, record: Any, request_key: str | None) -> None:
    """One journal line onto a snapshot: only the parts the snapshot was asked for."""
    if not isinstance(record, dict):
        return
    for name, fields in (record.get("d") or {}).items():
        if name in snap.docs:
            snap.docs[name] = merge_fields(snap.docs[name], fields)
    for name, entries in (record.get("l") or {}).items():
        if name in snap.logs:
            snap.logs[name].extend(entries)
    if request_key is not None and request_key in (record.get("r") or {}):
        snap.request = record["r"][request_key]
