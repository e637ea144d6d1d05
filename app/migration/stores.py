"""The one writer, and the copies into the configured stores: store → store, legacy → store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar, cast

import anyio.to_thread

from app.agents.uploads import ext_for
from app.domain.images import ImageEntry
from app.migration.legacy import legacy_record, list_legacy_folders, read_legacy_folder
from app.migration.records import BLOB_PREFIX, PERSON_BLOB_PREFIX, SessionRecord
from app.migration.report import MigrationReport, Progress, Tally, _NoProgress
from app.repositories.base import (
    DOC_NAMES,
    LOG_NAMES,
    BlobInfo,
    BlobNotFound,
    BlobRepository,
    Changes,
    DocName,
    LogName,
    SessionExists,
    SessionNotFound,
    SessionRepository,
    session_blob_key,
)
from app.repositories.users import INDEX_NAMES, UserRepository

T = TypeVar("T")


# ------------------------------------------------------------------------------ writer
async def write_session(
    record: SessionRecord, *, sessions: SessionRepository, blobs: BlobRepository, dry_run: bool
) -> bool:
    """Store one record; False (nothing written) when the session is already live."""
    sid = record.session_id
    if await sessions.exists(session_id=sid):
        return False
    if dry_run:
        return True
    docs = {name: dict(fields) for name, fields in record.docs.items()}
    for photo in record.photos:  # blobs first: a session never points at a missing blob
        key = session_blob_key(sid, f"{photo.name}.{ext_for(photo.content_type)}")
        info = await blobs.put(key=key, data=photo.data, content_type=photo.content_type)
        docs.setdefault("images", {})[photo.name] = ImageEntry(
            key=key,
            content_type=photo.content_type,
            etag=info.etag,
            size=info.size,
            created_at=photo.created_at.isoformat(),
            meta={"source": "legacy-import"},
        ).stored()
    try:
        await sessions.create(
            session_id=sid, created_at=record.created_at, owner_id=record.owner_id
        )
    except SessionExists:
        return False
    changes = Changes()
    for name, fields in docs.items():
        if fields:
            changes.update(cast(DocName, name), fields)
    for log_name, entries in record.logs.items():
        changes.append(cast(LogName, log_name), entries)
    try:
        await sessions.commit(session_id=sid, changes=changes)  # all of it, or nothing
    except BaseException:
        # A half-written session would be skipped by the next run: remove it so it is retried.
        with suppress(Exception):
            await sessions.delete(session_id=sid)
        raise
    return True


async def _each(
    items: AsyncIterator[T],
    work: Callable[[T], Awaitable[None]],
    *,
    concurrency: int,
    progress: Progress | None,
    report: MigrationReport,
    tally: Tally,
    label: Callable[[T], str],
    total: int | None = None,
) -> None:
    """Run `work` over a stream with at most `concurrency` items in flight (never all).

    One item's failure is recorded against `tally` under its label and the rest go on; each
    finished item advances the progress bar (of `total` items, when known)."""
    bar = _NoProgress() if progress is None else progress
    if total is not None:
        bar.reset(total=total)
    slots = asyncio.Semaphore(max(1, concurrency))

    async def run(item: T) -> None:
        try:
            await work(item)
        except Exception as exc:
            report.fail(tally, label(item), exc)
        finally:
            bar.update()
            slots.release()

    async with asyncio.TaskGroup() as group:
        async for item in items:
            await slots.acquire()
            group.create_task(run(item))


async def _stream(values: Iterable[T]) -> AsyncIterator[T]:
    for value in values:
        yield value


# ------------------------------------------------------------------------------ store → store
async def copy_sessions(
    source: SessionRepository,
    target: SessionRepository,
    blobs: BlobRepository,
    *,
    report: MigrationReport,
    progress: Progress | None = None,
    concurrency: int = 8,
) -> None:
    """Every live session of `source` (meta, documents, both logs) into `target`."""

    async def one(session_id: str) -> None:
        if await target.exists(session_id=session_id):
            report.sessions.skipped += 1
            return
        try:
            snap = await source.load(session_id=session_id, docs=DOC_NAMES, logs=LOG_NAMES)
        except SessionNotFound:
            report.notes.append(f"session {session_id}: expired or deleted while copying")
            return
        record = SessionRecord(
            session_id, snap.meta.created_at, snap.meta.owner_id, snap.docs, snap.logs
        )
        copied = await write_session(record, sessions=target, blobs=blobs, dry_run=report.dry_run)
        if copied:
            report.sessions.copied += 1
        else:
            report.sessions.skipped += 1

    await _each(
        source.iter_ids(), one, concurrency=concurrency, progress=progress, report=report,
        tally=report.sessions, label=lambda sid: f"session {sid}",
    )  # fmt: skip


async def copy_blobs(
    source: BlobRepository,
    target: BlobRepository,
    *,
    report: MigrationReport,
    progress: Progress | None = None,
    concurrency: int = 8,
) -> None:
    """Every blob under `sessions/` and `users/` (keepsakes) of `source` into `target`,
    streamed (never whole)."""

    async def one(info: BlobInfo) -> None:
        try:
            existing: BlobInfo | None = await target.stat(key=info.key)
        except BlobNotFound:
            existing = None
        if existing is not None and existing.size == info.size:
            report.blobs.skipped += 1
            return
        if not report.dry_run:
            reader = await source.open(key=info.key)
            try:
                await target.put(key=info.key, data=reader.chunks(), content_type=info.content_type)
            finally:
                await reader.aclose()
        report.blobs.copied += 1

    await _each(
        _chain(source, BLOB_PREFIX, PERSON_BLOB_PREFIX), one, concurrency=concurrency,
        progress=progress,
        report=report,
        tally=report.blobs, label=lambda info: f"blob {info.key}",
    )  # fmt: skip


async def _chain(source: BlobRepository, *prefixes: str) -> AsyncIterator[BlobInfo]:
    for prefix in prefixes:
        async for info in source.list(prefix=prefix):
            yield info


async def copy_users(
    source: UserRepository,
    target: UserRepository,
    *,
    report: MigrationReport,
    progress: Progress | None = None,
    concurrency: int = 8,
) -> None:
    """Every person of `source` (record, tags, session and keepsake indexes) into `target`.

    A person `target` already knows keeps their record there (counted as skipped); their
    indexes are merged either way, so a re-run after a failure finishes the copy."""

    async def known(owner: str) -> bool:
        if await target.get(owner_key=owner) is not None:
            return True
        for index in INDEX_NAMES:
            if (await target.index_page(owner_key=owner, index=index, limit=1)).entries:
                return True
        return False

    async def one(owner: str) -> None:
        record = await source.get(owner_key=owner)
        copied = not await known(owner)
        if record is not None and not report.dry_run:
            await target.restore(owner_key=owner, record=record)
        for index in INDEX_NAMES:
            cursor: str | None = None
            while True:
                page = await source.index_page(
                    owner_key=owner, index=index, limit=100, cursor=cursor
                )
                if not report.dry_run:
                    for entry in page.entries:
                        await target.index_add(
                            owner_key=owner, index=index, item_id=entry.item_id, at=entry.at
                        )
                if (cursor := page.next_cursor) is None:
                    break
        if copied:
            report.users.copied += 1
        else:
            report.users.skipped += 1

    await _each(
        source.iter_owners(), one, concurrency=concurrency, progress=progress, report=report,
        tally=report.users, label=lambda owner: f"person {owner}",
    )  # fmt: skip


# ------------------------------------------------------------------------------ legacy → store
async def import_legacy(
    root: Path,
    *,
    sessions: SessionRepository,
    blobs: BlobRepository,
    report: MigrationReport,
    progress: Progress | None = None,
    concurrency: int = 8,
) -> None:
    """Every `<root>/<id>/` folder of the old backend into the stores; one bad folder fails alone."""
    names = await anyio.to_thread.run_sync(list_legacy_folders, root)

    async def one(name: str) -> None:
        legacy = await anyio.to_thread.run_sync(read_legacy_folder, root / name)
        if legacy is None:
            report.notes.append(f"{name}: no legacy session files; ignored")
            return
        record, dropped = legacy_record(legacy)
        report.id_map[name] = record.session_id
        report.notes += [f"{name}: {note}" for note in legacy.notes]
        report.dropped_keys.update(dropped)
        copied = await write_session(record, sessions=sessions, blobs=blobs, dry_run=report.dry_run)
        if copied:
            report.sessions.copied += 1
            report.blobs.copied += len(record.photos)
        else:
            report.sessions.skipped += 1
            report.blobs.skipped += len(record.photos)

    await _each(
        _stream(names), one, concurrency=concurrency, progress=progress, report=report,
        tally=report.sessions, label=lambda name: f"legacy session {name}", total=len(names),
    )  # fmt: skip
