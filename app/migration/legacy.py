"""The old backend's on-disk layout: read a `<root>/<id>/` folder and map it to a record."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from app.agents.hera import COMPLETED, INCOMPLETE
from app.agents.images import IMAGE_NAME
from app.domain.family import Plan, TripInfo
from app.domain.history import HistoryEntry
from app.domain.images import sniff_image_type
from app.domain.personas import build_personas
from app.domain.profile import Profile
from app.migration.records import Photo, SessionRecord
from app.repositories.base import JSONDict, is_session_id

T = TypeVar("T")
LEGACY_FILES: Final = (
    "user_profile.json", "conversation_history.json", "family_conversation.json",
    "family_trip_info.json", "family_plan.json",
)  # fmt: skip
_LEGACY_ID_SALT: Final = b"hera-legacy-session:"
_USER_SPEAKERS: Final = {"user", "human", "you", "ユーザー", "あなた"}
_SKIPPED_SPEAKERS: Final = {"system", "tool", "function"}


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
        speaker = "user" if user else "hera"
        return HistoryEntry(speaker=speaker, message=text, timestamp=stamp).stored()
    speaker = "user" if user else who or "家族"
    role = "user" if user else _who(raw, "role") or speaker
    return HistoryEntry(speaker=speaker, role=role, message=text, timestamp=stamp).stored()


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if isinstance(v, str | int | float) and str(v).strip()]


def _plan(raw: JSONDict, confirmed: datetime, notes: list[str]) -> JSONDict | None:
    destination = raw.get("destination")
    if not isinstance(destination, str) or not destination.strip():
        notes.append("family_plan.json has no destination; plan not imported")
        return None
    return Plan(
        destination=destination.strip(),
        activities=_texts(raw.get("activities")),
        story=raw["story"] if isinstance(raw.get("story"), str) else "",
        letter=raw["letter"] if isinstance(raw.get("letter"), str) else "",
        confirmed_at=(_parse_time(raw.get("confirmed_at")) or confirmed).isoformat(),
    ).stored()


def legacy_record(legacy: LegacySession) -> tuple[SessionRecord, list[str]]:
    """The new session for one legacy folder, and the profile keys that were dropped."""
    sid = legacy_session_id(legacy.old_id)
    raw_profile = legacy.profile or {}
    # Validated and merged as an interview turn would: only known fields land.
    profile, _ = Profile().merge(Profile.from_untrusted(raw_profile))
    stored_profile = profile.stored()
    dropped = sorted(k for k in raw_profile if k not in stored_profile)
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
        family["trip_info"] = TripInfo().merge(found).stored()
    if profile.complete and (family or logs["family_history"]):
        # Stored now, as the API does on /complete: the family keeps its trip info.
        family["personas"] = [p.stored() for p in build_personas(profile, sid)]
    if plan:
        family.update(plan=plan)  # an agreed plan is what "complete" means
    docs: dict[str, JSONDict] = {
        "profile": stored_profile,
        "state": {"interview_status": COMPLETED if profile.complete else INCOMPLETE},
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
