"""The `hera` CLI: legacy import, store-to-store migration, prune and configuration errors.

Most cases call `app.cli.main([...])` in a worker thread (it runs its own event loop) with the
environment set the way an operator would; a few run `python -m app.cli` as a real process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from PIL import Image
from pydantic import SecretStr

from app.cli import main
from app.container import (
    build_blob_repository,
    build_session_repository,
    build_user_repository,
)
from app.migration import LegacySession, legacy_record, legacy_session_id
from app.repositories.base import is_session_id, person_blob_prefix, session_blob_key
from app.repositories.users import INDEX_NAMES, owner_key
from app.settings import Settings
from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.api.scripted_user import SCRIPT
from tests.support.polling import wait_for_http
from tests.support.redis_support import cleanup_namespace, namespace_keys
from tests.support.servers import s3_client
from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[1]
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
UseEnv = Callable[[Settings], None]


# ------------------------------------------------------------------------------ fixtures
def settings_env(settings: Settings) -> dict[str, str]:
    """The variables an operator would set to get exactly these settings."""
    env: dict[str, str] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[name.upper()] = str(value)
    return env


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> UseEnv:
    """Point the CLI's environment at `settings` (nothing of the runner or a `.env` leaks in)."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    def apply(settings: Settings) -> None:
        for name in SETTINGS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in settings_env(settings).items():
            monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
async def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Redis sessions (own namespace) + S3 blobs on moto (own bucket)."""
    settings = stack_settings("redis-s3", tmp_path / "cloud", request)
    yield settings
    assert settings.redis_url is not None
    await cleanup_namespace(settings.redis_url, settings.redis_namespace)


async def hera(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """Run the CLI in-process; return its exit code and what it printed."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, [str(a) for a in args])
    return code, capsys.readouterr().out


async def redis_session_count(settings: Settings) -> int:
    assert settings.redis_url is not None
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        keys = await namespace_keys(client, settings.redis_namespace)
    finally:
        await client.aclose()
    return sum(1 for key in keys if key.endswith(b":meta"))


def s3_keys(settings: Settings) -> list[str]:
    assert settings.s3_endpoint_url is not None
    pages = s3_client(settings.s3_endpoint_url).get_paginator("list_objects_v2")
    return [
        o["Key"]
        for p in pages.paginate(Bucket=settings.s3_bucket_name)
        for o in p.get("Contents", [])
    ]


# ------------------------------------------------------------------------------ legacy tree
def picture(fmt: str, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(out, fmt)
    return out.getvalue()


JPEG = picture("JPEG", (200, 150, 120))
PNG = picture("PNG", (90, 120, 200))
PLAN_STORY = "沖縄の青い海で、家族みんなで泳ぎました。"


@dataclass
class LegacyCase:
    old_id: str
    complete: bool
    messages: list[str]
    photos: dict[str, bytes] = field(default_factory=dict)
    plan: bool = False


def legacy_id(i: int) -> str:
    if i % 5 == 0:
        return f"user-{i:03d}"
    if i == 7:
        return "セッション七"
    if i == 9:
        return str(uuid.UUID(int=i, version=4)).upper()  # not canonical: gets a new id
    return str(uuid.UUID(int=10_000 + i, version=4))


def full_profile(i: int) -> dict[str, Any]:
    return {
        "age": 25 + i % 20,
        "gender": "女性",
        "relationship_status": "独身",
        "location": "東京都",
        "income_range": "500万円くらい",
        "user_personality_traits": {"openness": 0.8, "extraversion": 0.6},
        "partner_face_description": "優しい目をした笑顔の素敵な人",
        "ideal_partner": {
            "name": "健太",
            "temperament": "穏やかで優しい",
            "appearance": "背が高い",
        },
        "children_info": [{"name": "太郎", "desired_gender": "男の子"}],
        "name": "花子",  # keys the new profile does not know are dropped
        "session_notes": {"draft": True},
    }


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")


def write_legacy_session(root: Path, i: int) -> LegacyCase:
    case = LegacyCase(
        legacy_id(i), complete=i % 2 == 0, messages=[f"こんにちは、{i}番です。", "ようこそ。"]
    )
    folder = root / case.old_id
    (folder / "photos").mkdir(parents=True)
    profile = full_profile(i) if case.complete else {"age": 30, "gender": "男性", "name": "次郎"}
    write_json(folder / "user_profile.json", profile)
    if i % 3 == 0:  # both shapes the old agents wrote
        history = [
            {"role": "user", "content": case.messages[0]},
            {"role": "assistant", "content": case.messages[1]},
        ]
    else:
        stamp = "2025-03-01T10:00:00"
        history = [{"speaker": "user", "message": case.messages[0], "timestamp": stamp}, {"speaker": "hera", "message": case.messages[1], "timestamp": stamp}]  # fmt: skip
    write_json(folder / "conversation_history.json", history)
    # The old upload saved every user photo as user.png, JPEG or not.
    case.photos["user"] = JPEG if i % 2 == 0 else PNG
    (folder / "photos" / "user.png").write_bytes(case.photos["user"])
    if i % 10 == 3:
        (folder / "photos" / "avatar.gif").write_bytes(b"GIF89a")
    if case.complete:
        for name in ("partner", "child_1"):
            case.photos[name] = PNG
            (folder / "photos" / f"{name}.png").write_bytes(PNG)
        family = [
            {"speaker": "user", "message": "沖縄に行きたい！", "timestamp": "2025-03-02T09:00:00"},
            {
                "speaker": "健太",
                "message": "いいね、海で泳ごう！",
                "timestamp": "2025-03-02T09:00:01",
            },
        ]
        write_json(folder / "family_conversation.json", family)
        trip = {"destination": "沖縄", "activities": ["海水浴", "水族館"]}
        write_json(folder / "family_trip_info.json", trip)
        if i % 4 == 0:
            case.plan = True
            plan = {
                **trip,
                "story": PLAN_STORY,
                "letter": f"{i}番のあなたへ",
                "conversation_log": family,
            }
            write_json(folder / "family_plan.json", plan)
    return case


def write_legacy_tree(root: Path, count: int) -> list[LegacyCase]:
    return [write_legacy_session(root, i) for i in range(count)]


# ------------------------------------------------------------------------------ pure mapping
def test_legacy_ids_keep_canonical_uuids_and_map_others_to_stable_uuid4s() -> None:
    canonical = str(uuid.uuid4())
    assert legacy_session_id(canonical) == canonical
    for old in ("user-001", "セッション七", canonical.upper()):
        new = legacy_session_id(old)
        assert is_session_id(new) and new != old
        assert legacy_session_id(old) == new  # deterministic: re-runs find the same session
    assert legacy_session_id("user-001") != legacy_session_id("user-002")


def test_legacy_entries_are_mapped_to_the_new_shapes() -> None:
    legacy = LegacySession(
        "old",
        modified=datetime(2025, 1, 1, tzinfo=UTC),
        profile={"age": "32歳", "gender": "女性", "favourite": "猫"},
        history=[
            {"role": "system", "content": "you are hera"},
            {"role": "user", "content": "はじめまして", "timestamp": 1735722000},
            {"role": "model", "parts": [{"text": "ようこそ"}]},
            {"speaker": "hera"},
            "not an entry",
        ],
        family_history=[
            {"speaker": "user", "message": "海！"},
            {"speaker": "妻", "message": "いいね"},
        ],
        plan={"destination": "箱根", "activities": "温泉", "story": "物語", "conversation_log": []},
    )
    record, dropped = legacy_record(legacy)
    assert dropped == ["favourite"]
    assert record.docs["profile"] == {"age": 32, "gender": "女性"}
    assert record.docs["state"] == {"interview_status": "INCOMPLETE"}
    history = record.logs["history"]
    assert [(e["speaker"], e["message"]) for e in history] == [
        ("user", "はじめまして"),
        ("hera", "ようこそ"),
    ]
    assert history[0]["timestamp"] == "2025-01-01T09:00:00+00:00"
    assert all(isinstance(e["timestamp"], str) for e in history)
    family = record.logs["family_history"]
    assert [(e["speaker"], e["role"]) for e in family] == [("user", "user"), ("妻", "妻")]
    plan = record.docs["family"]["plan"]
    assert {k: plan[k] for k in ("destination", "activities", "story", "letter")} == {
        "destination": "箱根", "activities": ["温泉"], "story": "物語", "letter": "",
    }  # fmt: skip
    assert "conversation_log" not in plan and plan["confirmed_at"]
    assert "conversation_complete" not in record.docs["family"]  # derived from the plan
    assert record.docs["family"]["trip_info"] == {"destination": "箱根", "activities": ["温泉"]}
    assert "personas" not in record.docs["family"]  # the profile is incomplete
    assert "3 conversation entries skipped (no text, or system messages)" in legacy.notes


# ------------------------------------------------------------------------------ legacy import
async def check_imported(api: ApiClient, case: LegacyCase) -> None:
    sid = legacy_session_id(case.old_id)
    status = (await api.get(f"/api/sessions/{sid}/status")).json()
    assert [h["message"] for h in status["conversation_history"]] == case.messages
    assert [h["speaker"] for h in status["conversation_history"]] == ["user", "hera"]
    assert status["profile_complete"] is case.complete
    assert "name" not in status["user_profile"] and "session_notes" not in status["user_profile"]
    summary = (await api.get(f"/api/sessions/{sid}")).json()
    assert summary["interview_status"] == ("COMPLETED" if case.complete else "INCOMPLETE")
    assert summary["images"] == sorted(case.photos)
    for name, data in case.photos.items():
        photo = await api.get(f"/api/sessions/{sid}/photos/{name}")
        assert photo.status_code == 200 and photo.content == data
        assert photo.headers["content-type"] == ("image/jpeg" if data == JPEG else "image/png")
    family = (await api.get(f"/api/sessions/{sid}/family/status")).json()
    assert family["conversation_complete"] is case.plan
    if case.plan:
        assert family["family_plan"]["destination"] == "沖縄"
        assert family["family_plan"]["story"] == PLAN_STORY
    if case.complete:
        assert family["members"][0]["name"] == "健太"
        assert family["family_trip_info"]["destination"] == "沖縄"
        assert [e["speaker"] for e in family["conversation_history"]] == ["user", "健太"]
    turn = await api.post(f"/api/sessions/{sid}/messages", json={"message": "趣味は料理です。"})
    assert turn.status_code == 200, turn.text
    assert len(turn.json()["conversation_history"]) == len(case.messages) + 2
    if case.complete and not case.plan:  # the family goes on with the imported trip
        reply = await api.post(f"/api/sessions/{sid}/family/messages", json={"message": "楽しみ！"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["family_trip_info"]["destination"] == "沖縄"


@pytest.mark.slow
async def test_two_hundred_legacy_sessions_import_into_redis_and_s3_once(
    cloud: Settings, use_env: UseEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = write_legacy_tree(tmp_path / "legacy", 200)
    photos = sum(len(c.photos) for c in cases)
    use_env(cloud)

    code, out = await hera(capsys, "import-legacy", tmp_path / "legacy")
    assert code == 0, out
    assert "sessions: 200 copied, 0 skipped (already there), 0 failed" in out
    assert f"blobs: {photos} copied, 0 skipped (already there), 0 failed" in out
    assert f"  user-000 -> {legacy_session_id('user-000')}" in out
    assert "photos/avatar.gif skipped" in out
    assert "name ×200, session_notes ×100" in out
    assert await redis_session_count(cloud) == 200
    assert len(s3_keys(cloud)) == photos

    code, out = await hera(capsys, "import-legacy", tmp_path / "legacy")
    assert code == 0, out
    assert "sessions: 0 copied, 200 skipped (already there), 0 failed" in out
    assert f"blobs: 0 copied, {photos} skipped (already there), 0 failed" in out

    async for api in open_client(cloud):
        for index in (0, 1, 4, 7, 9, 10):
            await check_imported(api, cases[index])


async def test_dry_run_reports_what_would_be_imported_and_writes_nothing(
    cloud: Settings, use_env: UseEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = write_legacy_tree(tmp_path / "legacy", 4)
    use_env(cloud)
    code, out = await hera(capsys, "import-legacy", tmp_path / "legacy", "--dry-run")
    assert code == 0, out
    assert out.startswith("dry run: nothing was written")
    assert "sessions: 4 would be copied" in out
    assert f"blobs: {sum(len(c.photos) for c in cases)} would be copied" in out
    assert await redis_session_count(cloud) == 0
    assert s3_keys(cloud) == []


def test_a_corrupt_session_is_reported_and_the_rest_are_imported(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = stack_settings("file-disk", tmp_path, request)
    cases = write_legacy_tree(tmp_path / "legacy", 6)
    broken = cases[2].old_id
    (tmp_path / "legacy" / broken / "user_profile.json").write_text('{"age": 3', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    (tmp_path / "cwd").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "import-legacy", str(tmp_path / "legacy")],
        cwd=tmp_path / "cwd",
        env={**env, **settings_env(settings), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "sessions: 5 copied, 0 skipped (already there), 1 failed" in done.stdout
    assert f"legacy session {broken}: user_profile.json is not valid JSON" in done.stdout
    imported = {p.name for p in settings.resolved_sessions_dir.iterdir() if is_session_id(p.name)}
    assert imported == {legacy_session_id(c.old_id) for c in cases if c.old_id != broken}


# ------------------------------------------------------------------------------ store → store
async def make_sessions(api: ApiClient) -> list[str]:
    """One finished interview with a photo and a started family, one begun, one empty."""
    ids = [(await api.post("/api/sessions")).json()["session_id"] for _ in range(3)]
    for message in SCRIPT[:7]:
        await api.post(f"/api/sessions/{ids[0]}/messages", json={"message": message})
    assert (await api.post(f"/api/sessions/{ids[0]}/complete")).status_code == 200
    family = await api.post(f"/api/sessions/{ids[0]}/family/messages", json={"message": "沖縄！"})
    assert family.status_code == 200, family.text
    await api.post(f"/api/sessions/{ids[1]}/messages", json={"message": SCRIPT[0]})
    for sid in ids[:2]:
        upload = await api.post(
            f"/api/sessions/{sid}/photos/user", files={"file": ("me.jpg", JPEG, "image/jpeg")}
        )
        assert upload.status_code == 200, upload.text
    return ids


async def snapshot(api: ApiClient, ids: list[str], *, photos: bool = True) -> list[Any]:
    views: list[Any] = []
    for sid in ids:
        summary = (await api.get(f"/api/sessions/{sid}")).json()
        summary.pop("updated_at")  # a copy is written now
        views += [summary, (await api.get(f"/api/sessions/{sid}/status")).json()]
        views.append((await api.get(f"/api/sessions/{sid}/family/status")).json())
        if photos and "user" in summary["images"]:
            views.append((await api.get(f"/api/sessions/{sid}/photos/user")).content)
    return views


@pytest.mark.slow
async def test_file_and_disk_stores_migrate_to_redis_and_s3_and_back(
    cloud: Settings,
    use_env: UseEnv,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Built before the environment points anywhere: Settings() also reads the environment.
    source = stack_settings("file-disk", tmp_path / "source", request)
    back = stack_settings("file-disk", tmp_path / "back", request)
    async for api in open_client(source):
        ids = await make_sessions(api)
        before = await snapshot(api, ids)
    use_env(cloud)
    args = ["migrate", "--from-sessions-dir", source.resolved_sessions_dir]
    args += ["--from-blobs-dir", source.blobs_dir]
    code, out = await hera(capsys, *args)
    assert code == 0, out
    assert "sessions: 3 copied, 0 skipped (already there), 0 failed" in out
    assert "blobs: 2 copied, 0 skipped (already there), 0 failed" in out
    code, out = await hera(capsys, *args)
    assert "sessions: 0 copied, 3 skipped" in out and "blobs: 0 copied, 2 skipped" in out

    use_env(back)
    assert cloud.redis_url is not None
    code, out = await hera(
        capsys,
        "migrate",
        "--from-redis",
        cloud.redis_url,
        "--from-namespace",
        cloud.redis_namespace,
    )
    assert code == 0 and "sessions: 3 copied" in out, out

    async for api in open_client(cloud):
        assert await snapshot(api, ids) == before
        turn = await api.post(f"/api/sessions/{ids[1]}/messages", json={"message": SCRIPT[1]})
        assert turn.status_code == 200, turn.text
    async for api in open_client(back):
        assert await snapshot(api, ids, photos=False) == [
            v for v in before if not isinstance(v, bytes)
        ]


async def people_of(settings: Settings) -> dict[str, Any]:
    """Every person of a deployment: record and both indexes, as the store lists them."""
    users = await build_user_repository(settings)
    found: dict[str, Any] = {}
    try:
        async for owner in users.iter_owners():
            indexes = {
                index: (await users.index_page(owner_key=owner, index=index, limit=50)).entries
                for index in INDEX_NAMES
            }
            found[owner] = (await users.get(owner_key=owner), indexes)
    finally:
        await users.aclose()
    return found


async def test_people_and_their_keepsakes_migrate_to_redis_and_s3_and_back_once(
    cloud: Settings,
    use_env: UseEnv,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = stack_settings("file-disk", tmp_path / "source", request)
    back = stack_settings("file-disk", tmp_path / "back", request)
    users, blobs = await build_user_repository(source), await build_blob_repository(source)
    hana, taro = owner_key("hana"), owner_key("taro")
    sid = str(uuid.uuid4())
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    await users.update(owner_key=hana, fields={"display_name": "花子", "locale": "ja"})
    for tag in ("旅行", "海"):
        await users.add_tag(owner_key=hana, tag=tag)
    await users.index_add(owner_key=hana, index="sessions", item_id=sid, at=at)
    await users.index_add(owner_key=hana, index="keepsakes", item_id=sid, at=at)
    await users.index_add(owner_key=taro, index="sessions", item_id=str(uuid.uuid4()), at=at)
    keepsake = f"{person_blob_prefix(hana)}keepsakes/{sid}/keepsake.json"
    await blobs.put(key=keepsake, data=b'{"story": "..."}', content_type="application/json")
    await users.aclose()
    await blobs.aclose()
    before = await people_of(source)
    assert len(before) == 2

    use_env(cloud)
    args = ["migrate", "--from-users-dir", source.users_dir, "--from-blobs-dir", source.blobs_dir]
    code, out = await hera(capsys, *args)
    assert code == 0, out
    assert "people: 2 copied, 0 skipped (already there), 0 failed" in out
    assert "blobs: 1 copied, 0 skipped" in out
    assert await people_of(cloud) == before
    assert any(key.endswith(keepsake) for key in s3_keys(cloud))
    code, out = await hera(capsys, *args)
    assert "people: 0 copied, 2 skipped" in out and "blobs: 0 copied, 1 skipped" in out, out

    use_env(back)
    assert cloud.redis_url is not None
    redis_args = ["--from-redis", cloud.redis_url, "--from-namespace", cloud.redis_namespace]
    code, out = await hera(capsys, "migrate", "--dry-run", *redis_args)
    assert code == 0 and "people: 2 would be copied" in out, out
    assert await people_of(back) == {}
    code, out = await hera(capsys, "migrate", *redis_args)
    assert code == 0 and "people: 2 copied" in out, out
    assert await people_of(back) == before


async def test_an_unreachable_source_stops_the_migration_with_a_clear_line(
    use_env: UseEnv,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(stack_settings("file-disk", tmp_path, request))
    code, out = await hera(capsys, "migrate", "--from-redis", "redis://127.0.0.1:1/0")
    assert code == 1
    assert "aborted: StoreUnavailable: sessions store unavailable" in out


def test_migrate_without_a_source_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--dry-run"]) == 2
    assert "migrate needs --from-sessions-dir, --from-redis" in capsys.readouterr().err


# ------------------------------------------------------------------------------ prune
async def test_prune_removes_expired_file_sessions_with_their_blobs_and_keeps_live_ones(
    use_env: UseEnv,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = stack_settings("file-disk", tmp_path, request, session_ttl=3600)
    sessions = await build_session_repository(settings)
    blobs = await build_blob_repository(settings)
    expired, live = [(await sessions.create()).session_id for _ in range(2)]
    orphan = str(uuid.uuid4())  # blobs whose session never existed (or expired in Redis)
    for sid in (expired, live, orphan):
        await blobs.put(key=session_blob_key(sid, "user.jpg"), data=JPEG, content_type="image/jpeg")
    two_hours_ago = time.time() - 7200
    os.utime(settings.resolved_sessions_dir / expired / ".write", (two_hours_ago, two_hours_ago))
    use_env(settings)

    code, out = await hera(capsys, "prune", "--dry-run")
    assert code == 0 and expired in out and live not in out, out
    assert (settings.resolved_sessions_dir / expired).is_dir()

    code, out = await hera(capsys, "prune")
    assert code == 0, out
    assert f"sessions: removed 1 expired\n  {expired}\n" in out
    assert not (settings.resolved_sessions_dir / expired).exists()
    assert await sessions.exists(session_id=live)
    assert not await blobs.exists(key=session_blob_key(expired, "user.jpg"))
    assert await blobs.exists(key=session_blob_key(orphan, "user.jpg"))

    code, out = await hera(capsys, "prune", "--orphan-blobs")
    assert code == 0 and "those of 1 sessions (1 objects)" in out, out
    assert not await blobs.exists(key=session_blob_key(orphan, "user.jpg"))
    assert await blobs.exists(key=session_blob_key(live, "user.jpg"))


async def test_prune_on_redis_explains_that_keys_expire_by_themselves(
    use_env: UseEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    use_env(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0", hera_data_dir=tmp_path))  # type: ignore[call-arg]
    code, out = await hera(capsys, "prune")
    assert code == 0
    assert "Redis session keys expire by themselves (SESSION_TTL=86400s)" in out


# ------------------------------------------------------------------------------ the process
def cli_process(tmp_path: Path, *args: str, **variables: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env.update(HERA_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO), **variables)
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_invalid_configuration_exits_2_with_one_clear_line_per_problem(tmp_path: Path) -> None:
    process = cli_process(tmp_path, "prune", SESSION_TYPE="redis", STORAGE_MODE="cloud")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.splitlines() == [
        "configuration error: SESSION_TYPE=redis requires REDIS_URL",
        "configuration error: STORAGE_MODE=cloud requires CLOUD_STORAGE_TYPE (allowed: s3, gcs)",
    ]
    assert out == ""


@pytest.mark.slow
def test_serve_runs_the_api_on_the_given_port(tmp_path: Path) -> None:
    port = free_port()
    process = cli_process(tmp_path, "serve", "--port", str(port))
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", within=30, process=process)
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json() == {
            "status": "ok"
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_empties_the_metrics_directory_before_the_workers_start(
    tmp_path: Path, use_env: UseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale per-process files of an earlier run would be added to every scrape."""
    import uvicorn

    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_1234.db").write_bytes(b"stale")
    (directory / "keep.txt").write_text("not ours")
    use_env(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            hera_data_dir=tmp_path / "data",
            metrics_enabled=True,
            prometheus_multiproc_dir=directory,
        )
    )
    started: list[list[str]] = []
    monkeypatch.setattr(
        uvicorn, "run", lambda *a, **k: started.append(sorted(p.name for p in directory.iterdir()))
    )
    assert main(["serve", "--workers", "2"]) == 0
    assert started == [["keep.txt"]]
