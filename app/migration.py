"""Copy sessions and blobs between stores, and import the old backend's session folders.

Async functions over the two storage ports. Every source (another SessionRepository, a
BlobRepository, or a legacy folder read in a worker thread) becomes `SessionRecord`s or blob
streams, and one writer stores them so that a re-run copies nothing twice: a session whose id
is already live in the target is skipped (`create` raises SessionExists), a blob whose key
exists with the same size is skipped. Nothing here reads settings; `app.cli` wires the stores.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, cast, runtime_checkable

import anyio.to_thread

from app.agents.family import merge_trip
from app.agents.hera import COMPLETED, INCOMPLETE
from app.agents.images import IMAGE_NAME
from app.agents.personas import build_personas
from app.agents.profile import is_complete, merge_profile
from app.agents.uploads import ext_for, sniff_image_type
from app.repositories.base import (
    DOC_NAMES,
    LOG_NAMES,
    BlobInfo,
    BlobNotFound,
    BlobRepository,
    DocName,
    JSONDict,
    LogName,
    SessionExists,
    SessionNotFound,
    SessionRepository,
    is_session_id,
    session_blob_key,
    session_blob_prefix,
)

T = TypeVar("T")
ALL_DOCS: Final = cast(tuple[DocName, ...], DOC_NAMES)
ALL_LOGS: Final = cast(tuple[LogName, ...], LOG_NAMES)
APPEND_BATCH: Final = 500  # entries per append: bounded script arguments on Redis
BLOB_PREFIX: Final = "sessions/"
LEGACY_FILES: Final = (
    "user_profile.json", "conversation_history.json", "family_conversation.json",
    "family_trip_info.json", "family_plan.json",
)  # fmt: skip
_LEGACY_ID_SALT: Final = b"hera-legacy-session:"
_USER_SPEAKERS: Final = {"user", "human", "you", "ユーザー", "あなた"}
_SKIPPED_SPEAKERS: Final = {"system", "tool", "function"}


class Progress(Protocol):
    """What the CLI's progress bar offers (tqdm fits); the default does nothing."""

    def reset(self, total: float | None = None) -> None: ...

    def update(self, n: float | None = 1) -> bool | None: ...


class _NoProgress:
    def reset(self, total: float | None = None) -> None:
        return None

    def update(self, n: float | None = 1) -> bool | None:
        return None


@runtime_checkable
class SupportsPrune(Protocol):
    """A session store whose expired sessions stay on disk until pruned (the file store)."""

    async def prune_expired(self, *, dry_run: bool = False) -> list[str]: ...


# ------------------------------------------------------------------------------ report
def describe_error(error: BaseException) -> str:
    """One line for the summary: the first leaf of a group, the type unless it is ours."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, LegacyError) or not str(error):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


@dataclass
class Tally:
    copied: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class MigrationReport:
    dry_run: bool = False
    sessions: Tally = field(default_factory=Tally)
    blobs: Tally = field(default_factory=Tally)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped_keys: Counter[str] = field(default_factory=Counter)
    id_map: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, tally: Tally | None, item: str, error: BaseException) -> None:
        if tally is not None:
            tally.failed += 1
        self.failures.append(f"{item}: {describe_error(error)}")

    def summary(self, *, show_map: bool = True) -> list[str]:
        verb = "would be copied" if self.dry_run else "copied"
        lines = ["dry run: nothing was written"] if self.dry_run else []
        for name, tally in (("sessions", self.sessions), ("blobs", self.blobs)):
            lines.append(
                f"{name}: {tally.copied} {verb}, {tally.skipped} skipped (already there), "
                f"{tally.failed} failed"
            )
        renamed = sorted((old, new) for old, new in self.id_map.items() if old != new)
        if renamed and show_map:
            lines.append("legacy ids given new session ids:")
            lines += [f"  {old} -> {new}" for old, new in renamed]
        if self.dropped_keys:
            counts = ", ".join(f"{k} ×{n}" for k, n in sorted(self.dropped_keys.items()))
            lines.append(f"legacy profile keys not imported (unknown or invalid): {counts}")
        if self.notes:
            lines += ["notes:", *(f"  {note}" for note in sorted(self.notes))]
        if self.failures:
            lines += [f"failed ({len(self.failures)}):", *(f"  {f}" for f in sorted(self.failures))]
        return lines


# ------------------------------------------------------------------------------ writer
@dataclass(frozen=True)
class Photo:
    name: str  # logical image name: user, partner, child_N
    data: bytes
    content_type: str
    created_at: datetime


@dataclass
class SessionRecord:
    """Everything one session holds, store-independent: what a source yields."""

    session_id: str
    created_at: datetime | None = None
    owner_id: str | None = None
    docs: dict[str, JSONDict] = field(default_factory=dict)
    logs: dict[str, list[JSONDict]] = field(default_factory=dict)
    photos: list[Photo] = field(default_factory=list)


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
        docs.setdefault("images", {})[photo.name] = {
            "key": key,
            "content_type": photo.content_type,
            "etag": info.etag,
            "size": info.size,
            "created_at": photo.created_at.isoformat(),
            "meta": {"source": "legacy-import"},
        }
    try:
        await sessions.create(
            session_id=sid, created_at=record.created_at, owner_id=record.owner_id
        )
    except SessionExists:
        return False
    try:
        for name, fields in docs.items():
            if fields:
                await sessions.update(session_id=sid, doc=cast(DocName, name), fields=fields)
        for log_name, entries in record.logs.items():
            for start in range(0, len(entries), APPEND_BATCH):
                batch = entries[start : start + APPEND_BATCH]
                await sessions.append(session_id=sid, log=cast(LogName, log_name), entries=batch)
    except BaseException:
        # A half-written session would be skipped by the next run: remove it so it is retried.
        with suppress(Exception):
            await sessions.delete(session_id=sid)
        raise
    return True


async def _each(
    items: AsyncIterator[T], work: Callable[[T], Awaitable[None]], concurrency: int
) -> None:
    """Run `work` over a stream with at most `concurrency` items in flight (never all)."""
    slots = asyncio.Semaphore(max(1, concurrency))

    async def run(item: T) -> None:
        try:
            await work(item)
        finally:
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
    bar = _NoProgress() if progress is None else progress

    async def one(session_id: str) -> None:
        try:
            if await target.exists(session_id=session_id):
                report.sessions.skipped += 1
                return
            snap = await source.load(session_id=session_id, docs=ALL_DOCS, logs=ALL_LOGS)
            record = SessionRecord(
                session_id, snap.meta.created_at, snap.meta.owner_id, snap.docs, snap.logs
            )
            copied = await write_session(
                record, sessions=target, blobs=blobs, dry_run=report.dry_run
            )
            if copied:
                report.sessions.copied += 1
            else:
                report.sessions.skipped += 1
        except SessionNotFound:
            report.notes.append(f"session {session_id}: expired or deleted while copying")
        except Exception as exc:
            report.fail(report.sessions, f"session {session_id}", exc)
        finally:
            bar.update()

    await _each(source.iter_ids(), one, concurrency)


async def copy_blobs(
    source: BlobRepository,
    target: BlobRepository,
    *,
    report: MigrationReport,
    progress: Progress | None = None,
    concurrency: int = 8,
) -> None:
    """Every blob under `sessions/` of `source` into `target`, streamed (never whole)."""
    bar = _NoProgress() if progress is None else progress

    async def one(info: BlobInfo) -> None:
        try:
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
                    await target.put(
                        key=info.key, data=reader.chunks(), content_type=info.content_type
                    )
                finally:
                    await reader.aclose()
            report.blobs.copied += 1
        except Exception as exc:
            report.fail(report.blobs, f"blob {info.key}", exc)
        finally:
            bar.update()

    await _each(source.list(prefix=BLOB_PREFIX), one, concurrency)


# ------------------------------------------------------------------------------ legacy reader
class LegacyError(ValueError):
    """A legacy session folder that cannot be imported (corrupt or mistyped JSON)."""


@dataclass
class LegacySession:
    """One folder of the old backend, read as-is (validation happens in `legacy_record`)."""

    old_id: str
    modified: datetime
    profile: JSONDict | None = None
    history: list[Any] | None = None
    family_history: list[Any] | None = None
    trip: JSONDict | None = None
    plan: JSONDict | None = None
    plan_modified: datetime | None = None
    photos: list[Photo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def legacy_session_id(old_id: str) -> str:
    """A canonical UUID4 stays; anything else maps to a UUID4-shaped id derived from it."""
    if is_session_id(old_id):
        return old_id
    digest = hashlib.sha256(_LEGACY_ID_SALT + old_id.encode("utf-8", "surrogateescape")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))  # sets the version and variant bits


def list_legacy_folders(root: Path) -> list[str]:
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _read_json(path: Path, kind: type[T]) -> T | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LegacyError(f"{path.name} is not valid JSON ({exc})") from None
    if value is not None and not isinstance(value, kind):
        wanted = "an object" if kind is dict else "a list"
        raise LegacyError(f"{path.name} should hold {wanted}, not {type(value).__name__}")
    return value


def _read_photos(folder: Path, notes: list[str]) -> list[Photo]:
    found: dict[str, Photo] = {}
    directory = folder / "photos"
    paths = sorted(directory.iterdir()) if directory.is_dir() else []
    for path in paths:
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg") or not IMAGE_NAME.match(path.stem):
            notes.append(f"photos/{path.name} skipped (only user, partner, child_N images)")
            continue
        data = path.read_bytes()
        # The old upload saved every photo as user.png whatever it was: trust the bytes.
        content_type = sniff_image_type(data[:16])
        if content_type not in ("image/png", "image/jpeg"):
            notes.append(f"photos/{path.name} skipped (not a PNG or JPEG image)")
        elif path.stem in found:
            notes.append(f"photos/{path.name} skipped (another {path.stem} image was imported)")
        else:
            found[path.stem] = Photo(path.stem, data, content_type, _mtime(path))
    return list(found.values())


def read_legacy_folder(folder: Path) -> LegacySession | None:
    """Blocking (run it in a thread). None when the folder holds no legacy session files."""
    has_files = any((folder / name).is_file() for name in LEGACY_FILES)
    if not has_files and not (folder / "photos").is_dir():
        return None
    session = LegacySession(folder.name, _mtime(folder))
    session.profile = _read_json(folder / "user_profile.json", dict)
    session.history = _read_json(folder / "conversation_history.json", list)
    session.family_history = _read_json(folder / "family_conversation.json", list)
    session.trip = _read_json(folder / "family_trip_info.json", dict)
    session.plan = _read_json(folder / "family_plan.json", dict)
    if session.plan is not None:
        session.plan_modified = _mtime(folder / "family_plan.json")
    session.photos = _read_photos(folder, session.notes)
    return session


# ------------------------------------------------------------------------------ legacy mapping
def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:  # seconds, or JavaScript milliseconds
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        # The old server wrote naive local times on UTC containers.
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _text_of(entry: JSONDict) -> str | None:
    for key in ("message", "content", "text"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value
    parts = entry.get("parts")  # model-style {"role": "model", "parts": [{"text": ...}]}
    if isinstance(parts, list):
        text = "".join(
            p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
        if text.strip():
            return text
    return None


def _who(entry: JSONDict, *keys: str) -> str:
    return next((str(entry[k]).strip() for k in keys if entry.get(k)), "")


def _chat_entry(raw: Any, fallback: datetime, *, family: bool) -> JSONDict | None:
    if not isinstance(raw, dict) or (text := _text_of(raw)) is None:
        return None
    who = _who(raw, "speaker", "name", "role") if family else _who(raw, "speaker", "role")
    if who.lower() in _SKIPPED_SPEAKERS:
        return None
    stamp = (_parse_time(raw.get("timestamp")) or fallback).isoformat()
    user = who.lower() in _USER_SPEAKERS
    if not family:
        return {"speaker": "user" if user else "hera", "message": text, "timestamp": stamp}
    speaker = "user" if user else who or "家族"
    role = "user" if user else _who(raw, "role") or speaker
    return {"speaker": speaker, "role": role, "message": text, "timestamp": stamp}


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if isinstance(v, str | int | float) and str(v).strip()]


def _plan(raw: JSONDict, confirmed: datetime, notes: list[str]) -> JSONDict | None:
    destination = raw.get("destination")
    if not isinstance(destination, str) or not destination.strip():
        notes.append("family_plan.json has no destination; plan not imported")
        return None
    return {
        "destination": destination.strip(),
        "activities": _texts(raw.get("activities")),
        "story": raw["story"] if isinstance(raw.get("story"), str) else "",
        "letter": raw["letter"] if isinstance(raw.get("letter"), str) else "",
        "confirmed_at": (_parse_time(raw.get("confirmed_at")) or confirmed).isoformat(),
    }


def legacy_record(legacy: LegacySession) -> tuple[SessionRecord, list[str]]:
    """The new session for one legacy folder, and the profile keys that were dropped."""
    sid = legacy_session_id(legacy.old_id)
    raw_profile = legacy.profile or {}
    profile, _ = merge_profile({}, raw_profile)  # validated: only known fields land
    dropped = sorted(k for k in raw_profile if k not in profile)
    raw_logs = [*(legacy.history or []), *(legacy.family_history or [])]
    stamps = [t for e in raw_logs if isinstance(e, dict) and (t := _parse_time(e.get("timestamp")))]
    created = min(stamps, default=legacy.modified)
    history = [_chat_entry(e, created, family=False) for e in legacy.history or []]
    family_log = [_chat_entry(e, created, family=True) for e in legacy.family_history or []]
    logs = {
        "history": [e for e in history if e is not None],
        "family_history": [e for e in family_log if e is not None],
    }
    if unusable := len(history) + len(family_log) - sum(len(v) for v in logs.values()):
        legacy.notes.append(
            f"{unusable} conversation entries skipped (no text, or system messages)"
        )
    family: JSONDict = {}
    plan = (
        _plan(legacy.plan, legacy.plan_modified or created, legacy.notes) if legacy.plan else None
    )
    trip = legacy.trip or plan
    if trip:
        found = {
            "destination": trip.get("destination"),
            "activities": _texts(trip.get("activities")),
        }
        family["trip_info"] = merge_trip({"destination": None, "activities": []}, found)
    if is_complete(profile) and (family or logs["family_history"]):
        # Stored now, as the API does on /complete: the family keeps its trip info.
        family.update(personas=build_personas(profile, sid), status="active")
    if plan:
        family.update(plan=plan, conversation_complete=True, status="completed")
    docs: dict[str, JSONDict] = {
        "profile": profile,
        "state": {"interview_status": COMPLETED if is_complete(profile) else INCOMPLETE},
        "family": family,
    }
    record = SessionRecord(
        sid,
        created,
        docs={k: v for k, v in docs.items() if v},
        logs={k: v for k, v in logs.items() if v},
        photos=legacy.photos,
    )
    return record, dropped


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
    bar = _NoProgress() if progress is None else progress
    names = await anyio.to_thread.run_sync(list_legacy_folders, root)
    bar.reset(total=len(names))

    async def one(name: str) -> None:
        try:
            legacy = await anyio.to_thread.run_sync(read_legacy_folder, root / name)
            if legacy is None:
                report.notes.append(f"{name}: no legacy session files; ignored")
                return
            record, dropped = legacy_record(legacy)
            report.id_map[name] = record.session_id
            report.notes += [f"{name}: {note}" for note in legacy.notes]
            report.dropped_keys.update(dropped)
            copied = await write_session(
                record, sessions=sessions, blobs=blobs, dry_run=report.dry_run
            )
            if copied:
                report.sessions.copied += 1
                report.blobs.copied += len(record.photos)
            else:
                report.sessions.skipped += 1
                report.blobs.skipped += len(record.photos)
        except Exception as exc:
            report.fail(report.sessions, f"legacy session {name}", exc)
        finally:
            bar.update()

    await _each(_stream(names), one, concurrency)


# ------------------------------------------------------------------------------ prune
async def orphan_blob_sessions(sessions: SessionRepository, blobs: BlobRepository) -> list[str]:
    """Ids that own blobs but no live session (expired Redis sessions leave their images)."""
    orphans: list[str] = []
    last = ""
    async for info in blobs.list(prefix=BLOB_PREFIX):  # key order: one session at a time
        parts = info.key.split("/")
        sid = parts[1] if len(parts) > 2 else ""
        fresh = sid and sid != last and is_session_id(sid)
        if fresh and not await sessions.exists(session_id=sid):
            orphans.append(sid)
        last = sid
    return orphans


@dataclass
class PruneResult:
    sessions: list[str] = field(default_factory=list)  # expired sessions removed
    blob_sessions: list[str] = field(default_factory=list)  # sessions whose blobs go
    blobs_deleted: int = 0


async def prune(
    sessions: SessionRepository,
    blobs: BlobRepository,
    *,
    dry_run: bool = False,
    orphan_blobs: bool = False,
) -> PruneResult:
    result = PruneResult()
    if isinstance(sessions, SupportsPrune):
        result.sessions = await sessions.prune_expired(dry_run=dry_run)
    result.blob_sessions = list(result.sessions)
    if orphan_blobs:
        known = set(result.sessions)
        orphans = await orphan_blob_sessions(sessions, blobs)
        result.blob_sessions += [sid for sid in orphans if sid not in known]
    if not dry_run:
        for sid in result.blob_sessions:
            result.blobs_deleted += await blobs.delete_prefix(prefix=session_blob_prefix(sid))
    return result
