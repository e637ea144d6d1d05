"""The SessionRepository contract, run unchanged against every adapter."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.repositories.base import (
    InvalidId,
    SessionBusy,
    SessionNotFound,
    SessionRepository,
    new_session_id,
    utcnow,
)
from tests.conftest import SessionFactory
from tests.support.polling import eventually
from tests.support.stores import StoreSpec, python
from tests.support.writes import append, update

JAPANESE = "こんにちは、ヘーラーです。家族の未来を一緒に描きましょう 👨‍👩‍👧"


async def test_create_then_meta_round_trips(sessions: SessionRepository) -> None:
    meta = await sessions.create(owner_id="owner-1")
    got = await sessions.get_meta(session_id=meta.session_id)
    assert got.session_id == meta.session_id
    assert got.owner_id == "owner-1"
    assert got.created_at == meta.created_at
    assert got.created_at.tzinfo is not None
    assert await sessions.exists(session_id=meta.session_id)


async def test_japanese_documents_round_trip(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    profile = {"location": "東京", "age": 32, "partner": {"name": "花子", "hobbies": ["料理"]}}
    await update(sessions, session_id=sid, doc="profile", fields=profile)
    snap = await sessions.load(session_id=sid, docs=["profile"])
    assert snap.doc("profile") == profile


EXACT_VALUES: dict[str, Any] = {
    "max_signed": 2**63 - 1,
    "min_signed": -(2**63),
    "max_unsigned": 2**64 - 1,
    "float": 0.1 + 0.2,
    "tiny": 5e-324,
    "nested": {"list": [True, False, None, 1.5, "文字"], "empty": {}},
}


async def test_values_at_the_edges_of_json_round_trip_exactly(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await update(sessions, session_id=sid, doc="profile", fields=EXACT_VALUES)
    await append(sessions, session_id=sid, log="history", entries=[EXACT_VALUES, EXACT_VALUES])
    snap = await sessions.load(session_id=sid, docs=["profile"], logs=["history"])
    assert snap.doc("profile") == EXACT_VALUES
    assert snap.log("history") == [EXACT_VALUES, EXACT_VALUES]
    assert type(snap.doc("profile")["max_unsigned"]) is int  # not silently a float


@pytest.mark.parametrize(
    "bad",
    [2**64, -(2**63) - 1, float("nan"), float("inf"), {1: "int key"}, {"when": datetime.now()}],
    ids=["int-over-64-bits", "int-under-64-bits", "nan", "inf", "int-key", "datetime"],
)
async def test_values_that_would_not_read_back_exactly_are_refused_before_any_write(
    sessions: SessionRepository, bad: Any
) -> None:
    sid = (await sessions.create()).session_id
    with pytest.raises(ValueError):
        await update(sessions, session_id=sid, doc="profile", fields={"ok": 1, "bad": [bad]})
    with pytest.raises(ValueError):
        await append(sessions, session_id=sid, log="history", entries=[{"ok": 1}, {"x": bad}])
    snap = await sessions.load(session_id=sid, docs=["profile"], logs=["history"])
    assert snap.doc("profile") == {} and snap.log("history") == []


async def test_update_merges_fields_and_leaves_other_parts_alone(
    sessions: SessionRepository,
) -> None:
    sid = (await sessions.create()).session_id
    await update(sessions, session_id=sid, doc="profile", fields={"age": 30, "gender": "女性"})
    await update(sessions, session_id=sid, doc="family", fields={"trip": {"destination": "京都"}})
    await update(sessions, session_id=sid, doc="profile", fields={"age": 31, "gender": None})
    snap = await sessions.load(session_id=sid, docs=["profile", "family", "images"])
    assert snap.doc("profile") == {"age": 31}
    assert snap.doc("family") == {"trip": {"destination": "京都"}}
    assert snap.doc("images") == {}


async def test_load_returns_copies_not_live_state(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await update(sessions, session_id=sid, doc="profile", fields={"interests": ["旅行"]})
    snap = await sessions.load(session_id=sid, docs=["profile"])
    snap.doc("profile")["interests"].append("料理")
    again = await sessions.load(session_id=sid, docs=["profile"])
    assert again.doc("profile") == {"interests": ["旅行"]}


async def test_append_keeps_order(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await append(sessions, session_id=sid, log="history", entries=[{"n": 0}])
    assert len((await sessions.load(session_id=sid, logs=["history"])).log("history")) == 1
    batch = [{"n": i, "message": f"{JAPANESE}{i}"} for i in range(1, 25)]
    await append(sessions, session_id=sid, log="history", entries=batch)
    await append(sessions, session_id=sid, log="family_history", entries=[{"n": "f"}])
    snap = await sessions.load(session_id=sid, docs=[], logs=["history", "family_history"])
    assert [e["n"] for e in snap.log("history")] == list(range(25))
    assert snap.log("history")[3]["message"] == f"{JAPANESE}3"
    assert snap.log("family_history") == [{"n": "f"}]
    assert len((await sessions.load(session_id=sid, logs=["history"])).log("history")) == 25


async def test_concurrent_appends_lose_nothing(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await asyncio.gather(
        *(append(sessions, session_id=sid, log="history", entries=[{"n": i}]) for i in range(40))
    )
    snap = await sessions.load(session_id=sid, docs=[], logs=["history"])
    assert sorted(e["n"] for e in snap.log("history")) == list(range(40))


async def _after(moment: datetime) -> None:
    """Let the clock move past `moment` (and file-system timestamp granularity)."""
    later = moment + timedelta(milliseconds=20)

    async def passed() -> bool:
        return utcnow() > later

    await eventually(passed, within=2, what="the clock moving on")


async def test_every_write_refreshes_updated_at(sessions: SessionRepository) -> None:
    meta = await sessions.create()
    await _after(meta.updated_at)
    await append(sessions, session_id=meta.session_id, log="history", entries=[{"a": 1}])
    appended = (await sessions.get_meta(session_id=meta.session_id)).updated_at
    await _after(appended)
    await update(sessions, session_id=meta.session_id, doc="profile", fields={"age": 3})
    updated = await sessions.get_meta(session_id=meta.session_id)
    assert meta.updated_at < appended < updated.updated_at
    assert updated.created_at == meta.created_at


async def test_missing_session_reads_and_writes_raise_not_found(
    sessions: SessionRepository,
) -> None:
    ghost = new_session_id()
    assert not await sessions.exists(session_id=ghost)
    with pytest.raises(SessionNotFound):
        await sessions.load(session_id=ghost)
    with pytest.raises(SessionNotFound):
        await update(sessions, session_id=ghost, doc="profile", fields={"age": 1})
    with pytest.raises(SessionNotFound):
        await append(sessions, session_id=ghost, log="history", entries=[{"a": 1}])
    assert not await sessions.exists(session_id=ghost)  # writes never resurrect


async def test_delete_removes_every_part(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await update(sessions, session_id=sid, doc="profile", fields={"age": 1})
    await append(sessions, session_id=sid, log="history", entries=[{"a": 1}])
    assert await sessions.delete(session_id=sid) is True
    assert not await sessions.exists(session_id=sid)
    with pytest.raises(SessionNotFound):
        await sessions.load(session_id=sid, logs=["history"])
    assert await sessions.delete(session_id=sid) is False
    assert sid not in [i async for i in sessions.iter_ids()]


async def test_iter_ids_streams_every_live_session(sessions: SessionRepository) -> None:
    created = {(await sessions.create()).session_id for _ in range(12)}
    seen = [i async for i in sessions.iter_ids()]
    assert created <= set(seen)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    "bad_id",
    [
        "../etc/passwd",
        "..%2f..%2fetc",
        "%2e%2e",
        "..\\..\\windows",
        "/absolute/path",
        "abc\x00def",
        "ABCDEFAB-1234-4123-8123-ABCDEFABCDEF",  # not canonical (upper case)
        "12345678-1234-1234-1234-123456789012",  # not a UUID4
        "*",
        "{x}",
        "",
    ],
)
async def test_hostile_ids_are_rejected_before_any_io(
    sessions: SessionRepository, bad_id: str
) -> None:
    with pytest.raises(InvalidId):
        await sessions.load(session_id=bad_id)
    with pytest.raises(InvalidId):
        await append(sessions, session_id=bad_id, log="history", entries=[{"a": 1}])
    with pytest.raises(InvalidId):
        await sessions.delete(session_id=bad_id)


async def test_unknown_part_names_are_rejected(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    with pytest.raises(InvalidId):
        await update(sessions, session_id=sid, doc="../meta", fields={"a": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidId):
        await append(sessions, session_id=sid, log="lock", entries=[{"a": 1}])  # type: ignore[arg-type]


class ShiftedClock:
    """Now, moved on by the test: expiry without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.mark.parametrize("session_spec", ["memory", "file"], indirect=True)
async def test_session_expires_ttl_after_last_write_by_the_stores_clock(
    make_sessions: SessionFactory,
) -> None:
    clock = ShiftedClock()
    repo = await make_sessions(ttl_seconds=60, clock=clock)
    sid = (await repo.create()).session_id
    clock.offset = 59
    assert await repo.exists(session_id=sid)
    await append(repo, session_id=sid, log="history", entries=[{"a": 1}])  # refreshes
    clock.offset = 118
    assert await repo.exists(session_id=sid)
    clock.offset = 120
    assert not await repo.exists(session_id=sid)
    with pytest.raises(SessionNotFound):
        await repo.load(session_id=sid, logs=["history"])
    with pytest.raises(SessionNotFound):
        await append(repo, session_id=sid, log="history", entries=[{"a": 2}])


def _redis_of(spec: StoreSpec) -> Any:
    """A client of the spec's own server (the repository's is its own business)."""
    from tests.support.redis_support import fake_server, real_client

    if spec.kind == "fakeredis":
        import fakeredis

        return fakeredis.FakeAsyncRedis(server=fake_server(spec.params["server_id"]))
    return real_client(spec)


async def _ttls_ms(client: Any, spec: StoreSpec, sid: str) -> dict[str, int]:
    """The time to live of every key of one session (its hash tag), in milliseconds."""
    namespace = spec.params.get("namespace", "hera-test")  # fakeredis: the helper's default
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*{sid}*")]
    return {k.decode(): await client.pttl(k) for k in keys}


@pytest.mark.parametrize("session_spec", ["fakeredis", "redis"], indirect=True)
async def test_session_expires_ttl_after_last_write_by_the_servers_clock(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    # Redis expires keys by its own clock: real seconds here.
    repo = await make_sessions(ttl_seconds=2)
    client = _redis_of(session_spec)
    try:
        sid = (await repo.create()).session_id
        await append(repo, session_id=sid, log="history", entries=[{"a": 1}])

        async def half_gone() -> bool:
            return 0 < min((await _ttls_ms(client, session_spec, sid)).values()) < 1000

        await eventually(half_gone, within=5, what="a second of the session's TTL passing")
        await append(repo, session_id=sid, log="history", entries=[{"a": 2}])
        # The write gave every key of the session (meta, docs, logs) the whole TTL again.
        ttls = await _ttls_ms(client, session_spec, sid)
        assert len(ttls) >= 2 and all(1000 < ttl <= 2000 for ttl in ttls.values()), ttls

        async def gone() -> bool:
            return not await repo.exists(session_id=sid)

        await eventually(gone, within=10, what="the session expiring")
        assert await _ttls_ms(client, session_spec, sid) == {}  # no key of it left behind
    finally:
        await client.aclose()
    with pytest.raises(SessionNotFound):
        await repo.load(session_id=sid, logs=["history"])
    with pytest.raises(SessionNotFound):
        await append(repo, session_id=sid, log="history", entries=[{"a": 2}])


async def test_lock_excludes_a_second_holder_in_the_same_process(
    sessions: SessionRepository,
) -> None:
    sid = (await sessions.create()).session_id
    async with sessions.lock(session_id=sid):
        with pytest.raises(SessionBusy):
            async with sessions.lock(session_id=sid, wait=0.2):
                pass
    async with sessions.lock(session_id=sid, wait=1):  # released: free again
        pass


async def test_lock_waiter_runs_after_the_holder_releases(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    order: list[str] = []
    holder_in, waiter_trying = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with sessions.lock(session_id=sid):
            holder_in.set()
            order.append("holder-start")
            await waiter_trying.wait()  # the waiter is at the lock: release only now
            order.append("holder-end")

    async def waiter() -> None:
        await holder_in.wait()
        waiter_trying.set()
        async with sessions.lock(session_id=sid, wait=5):
            order.append("waiter")

    await asyncio.gather(holder(), waiter())
    assert order == ["holder-start", "holder-end", "waiter"]


def _start_holder(spec: StoreSpec, sid: str, options: dict[str, Any]) -> subprocess.Popen[str]:
    import json

    proc = subprocess.Popen(
        [python(), "-m", "tests.support.lock_holder", spec.to_json(), sid, json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the child holds the lock (or dies)
    if line.strip() != "locked":
        proc.kill()
        raise AssertionError(f"lock holder did not start: {line!r}")
    return proc


CROSS_PROCESS = pytest.mark.parametrize("session_spec", ["file", "redis"], indirect=True)


@CROSS_PROCESS
async def test_lock_excludes_a_holder_in_another_process(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    repo = await make_sessions(lock_ttl_seconds=30)
    sid = (await repo.create()).session_id
    proc = _start_holder(session_spec, sid, {"lock_ttl_seconds": 30})
    try:
        with pytest.raises(SessionBusy):
            async with repo.lock(session_id=sid, wait=0.3):
                pass
    finally:
        proc.kill()
        proc.wait()


@CROSS_PROCESS
async def test_lock_of_a_killed_holder_frees_after_expiry(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    repo = await make_sessions(lock_ttl_seconds=2)
    sid = (await repo.create()).session_id
    proc = _start_holder(session_spec, sid, {"lock_ttl_seconds": 2})
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    async with repo.lock(session_id=sid, wait=10):
        waited = time.monotonic() - started
    if session_spec.kind == "redis":  # the dead holder's lock held until its 2 s TTL ran out
        assert 0.5 < waited < 4, waited
    else:  # the file lock (flock) dies with its process
        assert waited < 1, waited


@pytest.mark.parametrize("session_spec", ["file", "fakeredis", "redis"], indirect=True)
async def test_live_holder_keeps_the_lock_past_its_expiry(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    repo = await make_sessions(lock_ttl_seconds=1)
    other = await make_sessions(lock_ttl_seconds=1)
    sid = (await repo.create()).session_id
    async with repo.lock(session_id=sid):
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # well past the 1 s expiry
            with pytest.raises(SessionBusy):
                async with other.lock(session_id=sid, wait=0.2):
                    pass
    async with other.lock(session_id=sid, wait=2):
        pass


async def test_ping_succeeds_on_a_healthy_store(sessions: SessionRepository) -> None:
    assert await sessions.ping() is None  # answers, and raises nothing


async def test_create_with_a_given_id_imports_and_refuses_a_live_one(
    sessions: SessionRepository,
) -> None:
    from datetime import UTC, datetime

    from app.repositories.base import SessionExists

    sid, when = new_session_id(), datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    meta = await sessions.create(session_id=sid, created_at=when)
    assert meta.session_id == sid
    assert (await sessions.get_meta(session_id=sid)).created_at == when
    with pytest.raises(SessionExists):
        await sessions.create(session_id=sid)
    with pytest.raises(InvalidId):
        await sessions.create(session_id="../escape")
