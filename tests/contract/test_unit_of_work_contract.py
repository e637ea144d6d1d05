"""The commit, lease, request-record and create_once contract, run against every adapter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from app.repositories.base import (
    Changes,
    InvalidId,
    LockLost,
    SessionBusy,
    SessionNotFound,
    SessionRepository,
    new_session_id,
)
from tests.conftest import SessionFactory
from tests.support.redis_support import namespace_keys
from tests.support.stores import StoreSpec

USER = {"speaker": "user", "message": "32歳です"}
HERA = {"speaker": "hera", "message": "ありがとうございます"}


def a_turn() -> Changes:
    return (
        Changes()
        .append("history", [USER, HERA])
        .update("profile", {"age": 32})
        .update("state", {"usage": {"interview_messages": 1}})
        .remember("key-1", {"fp": "abc", "result": {"reply": "ありがとうございます"}})
    )


async def test_a_commit_lands_every_part_together(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await sessions.commit(session_id=sid, changes=a_turn())
    snap = await sessions.load(
        session_id=sid, docs=["profile", "state"], logs=["history"], request_key="key-1"
    )
    assert snap.log("history") == [USER, HERA]
    assert snap.doc("profile") == {"age": 32}
    assert snap.doc("state") == {"usage": {"interview_messages": 1}}
    assert snap.request == {"fp": "abc", "result": {"reply": "ありがとうございます"}}


async def assert_untouched(sessions: SessionRepository, sid: str) -> None:
    """Nothing of a_turn() landed: no doc, no log entry, no request record."""
    snap = await sessions.load(
        session_id=sid,
        docs=["profile", "family", "state"],
        logs=["history"],
        request_key="key-1",
    )
    assert snap.doc("profile") == {} and snap.doc("family") == {} and snap.doc("state") == {}
    assert snap.log("history") == [] and snap.request is None


async def test_a_commit_with_a_bad_part_writes_no_part(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    bad = a_turn().update("family", {"score": float("nan")})
    with pytest.raises(ValueError):
        await sessions.commit(session_id=sid, changes=bad)
    with pytest.raises(InvalidId):
        await sessions.commit(session_id=sid, changes=a_turn().append("../lock", [{}]))  # type: ignore[arg-type]
    await assert_untouched(sessions, sid)


async def test_request_records_are_read_only_by_their_key(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await sessions.commit(session_id=sid, changes=a_turn())
    other = Changes().remember("key-2", {"fp": "def", "result": {}})
    await sessions.commit(session_id=sid, changes=other)
    assert (await sessions.load(session_id=sid, request_key="key-2")).request == {
        "fp": "def",
        "result": {},
    }
    assert (await sessions.load(session_id=sid, request_key="key-3")).request is None
    assert (await sessions.load(session_id=sid)).request is None  # not asked, not read
    with pytest.raises(InvalidId):
        await sessions.load(session_id=sid, request_key="../key")


async def test_request_records_go_with_their_session(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    await sessions.commit(session_id=sid, changes=a_turn())
    await sessions.delete(session_id=sid)
    with pytest.raises(SessionNotFound):
        await sessions.load(session_id=sid, request_key="key-1")


async def test_a_commit_fenced_by_the_held_lease_lands(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    async with sessions.lock(session_id=sid) as lease:
        assert lease.session_id == sid and lease.token
        await sessions.commit(session_id=sid, changes=a_turn(), lease=lease)
    assert (await sessions.load(session_id=sid, logs=["history"])).log("history") == [USER, HERA]


async def test_a_commit_fenced_by_a_released_lease_is_refused_and_writes_nothing(
    sessions: SessionRepository,
) -> None:
    sid = (await sessions.create()).session_id
    async with sessions.lock(session_id=sid) as stale:
        pass
    with pytest.raises(LockLost):
        await sessions.commit(session_id=sid, changes=a_turn(), lease=stale)
    async with sessions.lock(session_id=sid):  # and while somebody else holds the lock
        with pytest.raises(LockLost):
            await sessions.commit(session_id=sid, changes=a_turn(), lease=stale)
    await assert_untouched(sessions, sid)


async def test_a_lease_of_another_session_fences_nothing_here(sessions: SessionRepository) -> None:
    first, second = [(await sessions.create()).session_id for _ in range(2)]
    async with sessions.lock(session_id=first) as lease:
        with pytest.raises(LockLost):
            await sessions.commit(session_id=second, changes=a_turn(), lease=lease)
    await assert_untouched(sessions, second)


async def test_a_commit_on_a_missing_session_raises_not_found_and_creates_nothing(
    sessions: SessionRepository,
) -> None:
    ghost = new_session_id()
    with pytest.raises(SessionNotFound):
        await sessions.commit(session_id=ghost, changes=a_turn())
    assert not await sessions.exists(session_id=ghost)


async def test_a_waiter_learns_whether_the_holder_runs_the_same_request(
    sessions: SessionRepository,
) -> None:
    sid = (await sessions.create()).session_id
    async with sessions.lock(session_id=sid, tag="key-1"):
        with pytest.raises(SessionBusy) as same:
            async with sessions.lock(session_id=sid, wait=0.1, tag="key-1"):
                pass
        with pytest.raises(SessionBusy) as other:
            async with sessions.lock(session_id=sid, wait=0.1, tag="key-2"):
                pass
        with pytest.raises(SessionBusy) as untagged:
            async with sessions.lock(session_id=sid, wait=0.1):
                pass
    assert same.value.same_request is True
    assert other.value.same_request is False and untagged.value.same_request is False
    async with sessions.lock(session_id=sid, wait=0.1, tag="key-2"):  # released: free
        pass


async def test_a_waiter_that_gives_up_leaves_the_holders_tag(sessions: SessionRepository) -> None:
    sid = (await sessions.create()).session_id
    async with sessions.lock(session_id=sid, tag="key-1"):
        for waiter in ("key-1", "key-2", "key-1"):
            with pytest.raises(SessionBusy) as busy:
                async with sessions.lock(session_id=sid, wait=0.05, tag=waiter):
                    pass
            assert busy.value.same_request is (waiter == "key-1"), waiter


async def test_create_once_gives_the_same_session_for_the_same_key(
    sessions: SessionRepository,
) -> None:
    first, earlier = await sessions.create_once(request_key="req-a", fingerprint="fp-1")
    assert earlier is None
    again, earlier = await sessions.create_once(request_key="req-a", fingerprint="fp-2")
    assert again.session_id == first.session_id and again.created_at == first.created_at
    assert earlier == "fp-1"  # the caller compares it with its own request
    other, earlier = await sessions.create_once(request_key="req-b", fingerprint="fp-1")
    assert other.session_id != first.session_id and earlier is None


async def test_create_once_races_make_one_session(
    make_sessions: SessionFactory, session_spec: StoreSpec
) -> None:
    # Two repositories over one store where there can be two (workers); memory is one.
    repos = [await make_sessions() for _ in range(1 if session_spec.kind == "memory" else 2)]
    results = await asyncio.gather(
        *(
            repos[i % len(repos)].create_once(request_key="req-race", fingerprint="fp")
            for i in range(10)
        )
    )
    assert len({meta.session_id for meta, _ in results}) == 1
    assert sum(earlier is None for _, earlier in results) == 1
    ids = [i async for i in repos[0].iter_ids()]
    assert ids.count(results[0][0].session_id) == 1
    assert len(ids) == 1  # the losers' sessions are gone
    # ... and deleting them forgot nothing of the winner's key.
    again, earlier = await repos[-1].create_once(request_key="req-race", fingerprint="fp")
    assert again.session_id == results[0][0].session_id and earlier == "fp"


async def test_create_once_after_its_session_is_gone_makes_a_new_one(
    sessions: SessionRepository,
) -> None:
    first, _ = await sessions.create_once(request_key="req-c", fingerprint="fp")
    await sessions.delete(session_id=first.session_id)
    second, earlier = await sessions.create_once(request_key="req-c", fingerprint="fp")
    assert second.session_id != first.session_id and earlier is None
    assert await sessions.exists(session_id=second.session_id)


def _tree_text(root: Path) -> str:
    return "\n".join(
        f"{path}\n{path.read_bytes().decode(errors='replace') if path.is_file() else ''}"
        for path in sorted(root.rglob("*"))
    )


async def stored_text(spec: StoreSpec, sessions: SessionRepository) -> str:
    """Everything the store holds, as text to search (file tree, Redis namespace, memory)."""
    if spec.kind == "file":
        return await asyncio.to_thread(_tree_text, Path(spec.params["root"]))
    if spec.kind in ("redis", "fakeredis"):
        client: Any = cast(Any, sessions)._client
        parts = []
        for key in await namespace_keys(client, spec.params.get("namespace", "hera-test")):
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(f"{key!r} {await client.get(key)!r}")
            elif kind == "hash":
                parts.append(f"{key!r} {await client.hgetall(key)!r}")
            elif kind == "list":
                parts.append(f"{key!r} {await client.lrange(key, 0, -1)!r}")
            else:
                parts.append(f"{key!r} {kind}")
        return "\n".join(parts)
    return repr(vars(sessions))


async def test_deleting_a_session_forgets_the_request_key_that_made_it(
    session_spec: StoreSpec, sessions: SessionRepository
) -> None:
    kept, _ = await sessions.create_once(request_key="req-kept", fingerprint="fp")
    gone, _ = await sessions.create_once(request_key="req-gone", fingerprint="fp")
    assert gone.session_id in await stored_text(session_spec, sessions)
    assert await sessions.delete(session_id=gone.session_id)
    assert gone.session_id not in await stored_text(session_spec, sessions)
    again, earlier = await sessions.create_once(request_key="req-kept", fingerprint="fp")
    assert again.session_id == kept.session_id and earlier == "fp"


@pytest.mark.parametrize("key", ["", "a" * 65, "a b", "鍵", "../x", "a/b", "a:b"])
async def test_hostile_request_keys_are_refused_before_any_io(
    sessions: SessionRepository, key: str
) -> None:
    sid = (await sessions.create()).session_id
    calls: list[Any] = [
        lambda: sessions.load(session_id=sid, request_key=key),
        lambda: sessions.commit(session_id=sid, changes=Changes().remember(key, {})),
        lambda: sessions.create_once(request_key=key, fingerprint="fp"),
    ]
    for call in calls:
        with pytest.raises(InvalidId):
            await call()
    # Nothing was created or written on the way to the refusal.
    assert [i async for i in sessions.iter_ids()] == [sid]
    await assert_untouched(sessions, sid)
