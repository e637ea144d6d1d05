"""What only the Redis adapter promises: key layout, expiry, flat append cost, outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from app.agents.hera import HeraAgent
from app.agents.turns import RequestKey
from app.brains.offline.interview import OfflineInterviewBrain
from app.repositories._codec import dumps
from app.repositories._redis import create_redis_client
from app.repositories.base import Changes, LockLost, SessionNotFound, StoreUnavailable
from app.repositories.redis_sessions import RedisSessionRepository
from tests.support.brains import shared_analyser
from tests.support.polling import eventually
from tests.support.redis_support import cleanup_namespace, namespace_keys
from tests.support.services import free_port, unavailable
from tests.support.writes import append, update

APP = Path(__file__).resolve().parents[1] / "app"
TTL = 600


@pytest.fixture
def url(redis_url: str | None) -> str:
    if redis_url is None:
        unavailable("no Redis server reachable at HERA_TEST_REDIS_URL / 127.0.0.1:6379")
    assert redis_url is not None
    return redis_url


@pytest.fixture
async def client(url: str) -> AsyncIterator[redis.asyncio.Redis]:
    raw = create_redis_client(url)
    yield raw
    await raw.aclose()


@pytest.fixture
async def make_repo(
    url: str, client: redis.asyncio.Redis
) -> AsyncIterator[Callable[..., RedisSessionRepository]]:
    namespaces: list[str] = []

    def make(**options: Any) -> RedisSessionRepository:
        namespaces.append(f"hera-test-{uuid.uuid4().hex[:12]}")
        options.setdefault("ttl_seconds", TTL)
        return RedisSessionRepository(client=client, namespace=namespaces[-1], **options)

    yield make
    for namespace in namespaces:
        await cleanup_namespace(url, namespace)


def _wire(arg: Any) -> bytes:
    return arg if isinstance(arg, bytes) else str(arg).encode()


@contextlib.contextmanager
def _sent_commands(
    client: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[str, int]]]:
    """(command, bytes) of what this client sends meanwhile: counted here, so concurrent users
    of the server don't matter."""
    calls: list[tuple[str, int]] = []
    original: Callable[..., Awaitable[Any]] = client.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append((str(args[0]), sum(len(_wire(a)) for a in args)))
        return await original(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counting)
    try:
        yield calls
    finally:
        monkeypatch.setattr(client, "execute_command", original)


async def _fill(repo: RedisSessionRepository) -> str:
    sid = (await repo.create(owner_id="owner")).session_id
    await update(repo, session_id=sid, doc="profile", fields={"name": "花子"})
    await update(repo, session_id=sid, doc="family", fields={"trip": {"destination": "京都"}})
    await append(
        repo, session_id=sid, log="history", entries=[{"role": "user", "text": "こんにちは"}]
    )
    await append(repo, session_id=sid, log="family_history", entries=[{"text": "行こう"}])
    return sid


async def test_every_key_of_a_session_carries_its_hash_tag_and_one_ttl(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = await _fill(repo)
    keys = await namespace_keys(client, repo.namespace)
    names = sorted(k.decode() for k in keys)
    base = f"{repo.namespace}:{{{sid}}}"
    assert names == sorted(
        f"{base}:{part}"
        for part in ("meta", "doc:profile", "doc:family", "log:history", "log:family_history")
    )
    ttls = [await client.ttl(k) for k in keys]
    assert all(TTL - 5 <= t <= TTL for t in ttls), ttls


async def test_a_write_re_arms_the_expiry_of_every_key(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = await _fill(repo)
    keys = await namespace_keys(client, repo.namespace)
    for key in keys:  # as if the session had been idle for most of its life
        await client.expire(key, 5)
    await append(repo, session_id=sid, log="history", entries=[{"text": "また来たよ"}])
    ttls = [await client.ttl(k) for k in keys]
    assert all(TTL - 5 <= t <= TTL for t in ttls), ttls


async def test_append_costs_the_same_commands_and_bytes_at_length_10_and_1000(
    make_repo: Callable[..., RedisSessionRepository],
    client: redis.asyncio.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_repo()
    sid = (await repo.create()).session_id
    entry = {"role": "user", "text": "週末は家族で海に行きたいです"}
    cost: dict[int, list[tuple[str, int]]] = {}
    for target in (10, 1000):
        have = len((await repo.load(session_id=sid, logs=["history"])).log("history"))
        await append(repo, session_id=sid, log="history", entries=[entry] * (target - have))
        with _sent_commands(client, monkeypatch) as calls:
            await append(repo, session_id=sid, log="history", entries=[entry])
        assert len((await repo.load(session_id=sid, logs=["history"])).log("history")) == target + 1
        cost[target] = list(calls)
    assert cost[10] == cost[1000]
    assert [name for name, _ in cost[10]] == ["EVALSHA"]  # one round trip, script cached
    # The entry, the session's key names, a sha, a timestamp and a few numbers: no history.
    parts = ("meta", "doc:profile", "doc:family", "doc:images", "doc:state", "log:history",
             "log:family_history", "requests", "lock")  # fmt: skip
    keys = [f"{repo.namespace}:{{{sid}}}:{part}" for part in parts]
    fixed = len(dumps(entry).encode()) + sum(len(k) for k in keys)
    assert cost[10][0][1] <= fixed + 120


async def test_an_unreachable_redis_raises_store_unavailable_quickly() -> None:
    dead = create_redis_client(f"redis://127.0.0.1:{free_port()}/9", socket_timeout=1.0)
    repo = RedisSessionRepository(client=dead, ttl_seconds=TTL, lock_wait_seconds=1)
    sid = str(uuid.uuid4())
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: repo.create(),
        lambda: repo.exists(session_id=sid),
        lambda: repo.load(session_id=sid, logs=["history"]),
        lambda: update(repo, session_id=sid, doc="profile", fields={"a": 1}),
        lambda: append(repo, session_id=sid, log="history", entries=[{"a": 1}]),
        lambda: repo.delete(session_id=sid),
        repo.ping,
    ]
    try:
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            assert time.monotonic() - started < 3
        with pytest.raises(StoreUnavailable):
            async with repo.lock(session_id=sid):
                pass
        with pytest.raises(StoreUnavailable):
            [i async for i in repo.iter_ids()]
    finally:
        await repo.aclose()


async def test_writes_to_a_deleted_session_raise_not_found_and_create_no_keys(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = await _fill(repo)
    assert await repo.delete(session_id=sid) is True
    with pytest.raises(SessionNotFound):
        await update(repo, session_id=sid, doc="profile", fields={"name": "花子"})
    with pytest.raises(SessionNotFound):
        await append(repo, session_id=sid, log="history", entries=[{"text": "まだいる?"}])
    assert await namespace_keys(client, repo.namespace) == []


async def test_writes_to_an_expired_session_create_no_keys(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo(ttl_seconds=1)
    sid = await _fill(repo)

    async def all_gone() -> bool:
        return await namespace_keys(client, repo.namespace) == []

    await eventually(all_gone, within=10, what="every key expiring")  # together, none lingers
    with pytest.raises(SessionNotFound):
        await append(repo, session_id=sid, log="history", entries=[{"text": "おーい"}])
    assert await namespace_keys(client, repo.namespace) == []


async def test_iter_ids_sees_only_its_own_namespace(
    make_repo: Callable[..., RedisSessionRepository],
) -> None:
    mine, theirs = make_repo(), make_repo()
    own = {(await mine.create()).session_id for _ in range(3)}
    other = (await theirs.create()).session_id
    assert {i async for i in mine.iter_ids()} == own
    assert [i async for i in theirs.iter_ids()] == [other]


async def test_lock_lives_under_the_hash_tag_and_is_gone_after_release(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo(lock_ttl_seconds=0.6)
    sid = (await repo.create()).session_id
    key = f"{repo.namespace}:{{{sid}}}:lock"
    async with repo.lock(session_id=sid):
        first = await client.get(key)
        started = time.monotonic()

        async def held_past_expiry() -> bool:
            assert await client.get(key) == first  # never lost or taken over meanwhile
            assert 0 < await client.pttl(key) <= 600
            return time.monotonic() - started > 1.5  # 2.5 lock TTLs: only the heartbeat

        await eventually(held_past_expiry, within=10, what="the lock outliving its TTL")
    assert await client.exists(key) == 0


async def test_a_lock_that_merely_expired_is_released_quietly(
    make_repo: Callable[..., RedisSessionRepository],
    client: redis.asyncio.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = make_repo()
    sid = (await repo.create()).session_id
    with caplog.at_level(logging.WARNING):
        async with repo.lock(session_id=sid):
            await client.delete(f"{repo.namespace}:{{{sid}}}:lock")  # as if it had expired
    assert "expired before its turn ended" in caplog.text


async def test_a_commit_after_the_lock_changed_hands_raises_lock_lost_and_writes_nothing(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = (await repo.create()).session_id
    key = f"{repo.namespace}:{{{sid}}}:lock"
    turn = Changes().append("history", [{"n": 1}]).update("profile", {"age": 30})
    with pytest.raises(LockLost):
        async with repo.lock(session_id=sid) as lease:
            await client.set(key, b"someone-else", px=5000)  # expired, then taken over
            await repo.commit(session_id=sid, changes=turn, lease=lease)
    snap = await repo.load(session_id=sid, docs=["profile"], logs=["history"])
    assert snap.doc("profile") == {} and snap.log("history") == []
    assert await client.get(key) == b"someone-else"  # never deletes another holder's lock


async def test_a_commit_after_the_lock_expired_raises_lock_lost(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = (await repo.create()).session_id
    with pytest.raises(LockLost):
        async with repo.lock(session_id=sid) as lease:
            await client.delete(f"{repo.namespace}:{{{sid}}}:lock")  # as if its TTL ran out
            await repo.commit(
                session_id=sid, changes=Changes().append("history", [{}]), lease=lease
            )
    assert (await repo.load(session_id=sid, logs=["history"])).log("history") == []


async def test_a_turn_that_committed_is_never_answered_with_an_error(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = (await repo.create()).session_id
    async with repo.lock(session_id=sid) as lease:
        await repo.commit(
            session_id=sid, changes=Changes().append("history", [{"n": 1}]), lease=lease
        )
        # The lock is lost after the commit: releasing it must not turn the stored turn
        # into an error (the client's retry would then take the turn twice).
        await client.set(f"{repo.namespace}:{{{sid}}}:lock", b"someone-else", px=5000)
    assert (await repo.load(session_id=sid, logs=["history"])).log("history") == [{"n": 1}]


async def test_a_failing_turn_is_not_masked_by_a_lost_lock(
    make_repo: Callable[..., RedisSessionRepository], client: redis.asyncio.Redis
) -> None:
    repo = make_repo()
    sid = (await repo.create()).session_id
    with pytest.raises(KeyError):
        async with repo.lock(session_id=sid):
            await client.set(f"{repo.namespace}:{{{sid}}}:lock", b"someone-else", px=5000)
            raise KeyError("the turn's own failure")


def test_app_source_never_uses_keys_flushall_or_flushdb() -> None:
    # KEYS blocks the server for O(all keys); FLUSH* would wipe data the app does not own.
    forbidden = re.compile(
        r"""(?i)\bflushall\b|\bflushdb\b|['"]keys['"]|\b(?:client|redis)\.keys\("""
    )
    offenders = [
        f"{path.relative_to(APP.parent)}:{number}"
        for path in sorted(APP.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if forbidden.search(line)
    ]
    assert offenders == []


async def test_a_turn_ends_even_if_the_heartbeat_swallows_its_cancel(
    make_repo: Callable[..., RedisSessionRepository], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On Python 3.11 a cancel that lands while redis-py's own wait_for completes is lost.
    # Model that deterministically: an extend that is always in flight and eats the cancel.
    from redis.asyncio.lock import Lock

    extending = asyncio.Event()

    async def extend_swallowing_cancel(self: Lock, *args: Any, **kwargs: Any) -> bool:
        extending.set()
        # A round trip in flight when the turn ends; the cancel is eaten, as a wait_for that
        # just completed does on 3.11.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.2)
        return True

    monkeypatch.setattr(Lock, "extend", extend_swallowing_cancel)
    repo = make_repo(lock_ttl_seconds=0.03, lock_wait_seconds=5)
    sid = (await repo.create()).session_id

    async def turn() -> None:
        extending.clear()
        async with repo.lock(session_id=sid):
            await extending.wait()  # end the turn exactly while an extend is in flight

    for _ in range(5):  # the turn returns instead of hanging on a heartbeat that never ends
        await asyncio.wait_for(turn(), timeout=5)
    async with repo.lock(session_id=sid, wait=1):  # and its lock was released
        pass


async def test_a_load_is_one_script_call_returning_every_doc_and_log_asked_for(
    make_repo: Callable[..., RedisSessionRepository],
    client: redis.asyncio.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_repo()
    sid = await _fill(repo)
    await repo.load(session_id=sid, docs=["profile"], logs=["history"])  # script now cached
    with _sent_commands(client, monkeypatch) as calls:
        snap = await repo.load(
            session_id=sid, docs=["profile", "family", "state"], logs=["history", "family_history"]
        )
    assert [name for name, _ in calls] == [
        "EVALSHA"
    ]  # one command, one reply: no MULTI / QUEUED / EXEC
    assert snap.meta.session_id == sid and snap.meta.owner_id == "owner"
    assert snap.docs == {
        "profile": {"name": "花子"},
        "family": {"trip": {"destination": "京都"}},
        "state": {},
    }
    assert snap.logs == {
        "history": [{"role": "user", "text": "こんにちは"}],
        "family_history": [{"text": "行こう"}],
    }
    # Logs only (no docs) and a missing session go through the same script.
    only_logs = await repo.load(session_id=sid, docs=[], logs=["family_history"])
    assert only_logs.docs == {} and only_logs.logs == {"family_history": [{"text": "行こう"}]}
    with pytest.raises(SessionNotFound):
        await repo.load(session_id=str(uuid.uuid4()), logs=["history"])


async def test_an_interview_turn_costs_four_round_trips_and_a_replay_three(
    make_repo: Callable[..., RedisSessionRepository],
    client: redis.asyncio.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_repo()
    hera = HeraAgent(sessions=repo, brain=OfflineInterviewBrain(shared_analyser()))
    sid = (await repo.create()).session_id
    await hera.handle_message(sid, "こんにちは")  # scripts loaded into the server's cache
    request = RequestKey.of("turn-2", "interview_message", "32歳の女性です。")
    with _sent_commands(client, monkeypatch) as turn:
        first = await hera.handle_message(sid, "32歳の女性です。", request)
    # Lock (SET NX), load (one script), commit (one script), unlock (one script).
    assert [name for name, _ in turn] == ["SET", "EVALSHA", "EVALSHA", "EVALSHA"]
    with _sent_commands(client, monkeypatch) as replay:
        again = await hera.handle_message(sid, "32歳の女性です。", request)
    assert [name for name, _ in replay] == ["SET", "EVALSHA", "EVALSHA"]  # nothing written
    assert again == first


async def test_a_persons_keys_share_their_own_hash_tag_and_never_expire(
    url: str, client: redis.asyncio.Redis
) -> None:
    from app.repositories.redis_users import RedisUserRepository
    from app.repositories.users import owner_key

    namespace = f"hera-users-{uuid.uuid4().hex[:12]}"
    users = RedisUserRepository(client=create_redis_client(url), namespace=namespace)
    owner, sid = owner_key("someone"), str(uuid.uuid4())
    try:
        await users.update(owner_key=owner, fields={"name": "花子"})
        await users.add_tag(owner_key=owner, tag="旅行")
        for index in ("sessions", "keepsakes"):
            await users.index_add(
                owner_key=owner, index=index, item_id=sid, at=datetime(2026, 12, 1, tzinfo=UTC)
            )
        keys = sorted(k.decode() for k in await namespace_keys(client, namespace))
        base = f"{namespace}:user:{{{owner}}}"
        assert keys == sorted(
            f"{base}:{part}" for part in ("record", "tags", "idx:sessions", "idx:keepsakes")
        )
        assert [await client.ttl(k) for k in keys] == [-1] * 4  # no TTL: the durable tier
        # The hash tag is the owner key alone: never a session's slot, whatever the ids.
        assert all(re.findall(r"\{([^}]*)\}", k) == [owner] for k in keys)
        assert await users.delete(owner_key=owner)
        assert await namespace_keys(client, namespace) == []
    finally:
        await users.aclose()
        await cleanup_namespace(url, namespace)
