"""REDIS_MODE=sentinel: the settings that configure it, and a real failover.

- Settings: sentinel mode needs REDIS_SENTINELS and REDIS_SENTINEL_MASTER (each missing one
  named), every REDIS_SENTINELS entry must be host:port, and the sentinel variables without
  sentinel mode are refused; a good configuration becomes the app's RedisTarget.
- A real master, a replica and three `redis-server --sentinel` processes
  (tests/support/redis_topologies.py), the app in-process with REDIS_URL pointing nowhere
  (only its database is used): a session is created and turns committed, replicated (WAIT),
  then the master is SIGKILLed. Every answer meanwhile is 200 or 503 `store_unavailable`;
  within 15 s of the kill the same app (no restart) serves the session again from the
  promoted replica with every turn written before, a new turn works and /api/ready is ok.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from app.container import redis_target
from app.ratelimit import build_rate_limiter
from app.repositories._redis import create_redis_client
from app.settings import Settings, load_settings
from tests.api.scripted_user import SCRIPT
from tests.support.api import assert_200_or_store_unavailable, json_of, running_app
from tests.support.env import clean, problems_from
from tests.support.polling import entered_in_thread, eventually
from tests.support.redis_topologies import redis_sentinel

FOLLOW_SECONDS = 15.0  # kill -> the session answers 200 again (the promise)
REQUEST_SECONDS = 10.0  # no single request may hang longer than this meanwhile
UNUSED_URL = "redis://127.0.0.1:1/0"  # sentinel mode: only the database (0) of it is used


# ------------------------------------------------------------------ settings
@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the test runner and no `.env` of the checkout leak into a case."""
    clean(monkeypatch, tmp_path)


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_MODE=sentinel requires REDIS_SENTINELS",
        ),
        (
            {"REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379"},
            "REDIS_MODE=sentinel requires REDIS_SENTINEL_MASTER",
        ),
        (
            {"REDIS_SENTINELS": " , ", "REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_MODE=sentinel requires REDIS_SENTINELS",
        ),
        (
            {"REDIS_SENTINELS": "10.0.0.1:26379,nohost", "REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_SENTINELS: 'nohost' is not host:port",
        ),
        (
            {"REDIS_SENTINELS": "h:99999", "REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_SENTINELS: 'h:99999' is not host:port",
        ),
        (
            {"REDIS_SENTINELS": "h:0", "REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_SENTINELS: 'h:0' is not host:port",
        ),
        (
            {"REDIS_SENTINELS": ":26379", "REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_SENTINELS: ':26379' is not host:port",
        ),
        (
            {"REDIS_SENTINELS": "h:port", "REDIS_SENTINEL_MASTER": "hera"},
            "REDIS_SENTINELS: 'h:port' is not host:port",
        ),
    ],
    ids=[
        "no-sentinels",
        "no-master",
        "blank-sentinels",
        "nohost",
        "port-99999",
        "port-0",
        "no-host",
        "port-not-a-number",
    ],
)
def test_sentinel_mode_refuses_an_incomplete_or_bad_configuration_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    problems = problems_from(monkeypatch, REDIS_MODE="sentinel", REDIS_URL=UNUSED_URL, **env)
    assert problems == [line]


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("mode", [None, "standalone", "cluster"])
@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_SENTINELS": "10.0.0.1:26379"},
        {"REDIS_SENTINEL_MASTER": "hera"},
        {"REDIS_SENTINELS": "10.0.0.1:26379", "REDIS_SENTINEL_MASTER": "hera"},
    ],
    ids=["sentinels", "master", "both"],
)
def test_sentinel_variables_without_sentinel_mode_are_refused(
    monkeypatch: pytest.MonkeyPatch, mode: str | None, env: dict[str, str]
) -> None:
    if mode is not None:
        env = {**env, "REDIS_MODE": mode}
    problems = problems_from(monkeypatch, REDIS_URL="redis://10.0.0.1:6379/0", **env)
    assert problems == ["REDIS_SENTINELS and REDIS_SENTINEL_MASTER need REDIS_MODE=sentinel"]


@pytest.mark.usefixtures("clean_environment")
def test_an_unknown_redis_mode_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [line] = problems_from(monkeypatch, REDIS_MODE="replicated", REDIS_URL=UNUSED_URL)
    assert line.startswith("REDIS_MODE: invalid value 'replicated'"), line
    assert all(mode in line for mode in ("standalone", "cluster", "sentinel")), line


@pytest.mark.usefixtures("clean_environment")
def test_a_good_sentinel_configuration_becomes_the_apps_redis_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "REDIS_MODE": "sentinel",
        "REDIS_SENTINELS": " 10.0.0.1:26379 , sentinel-b:26380,[::1]:26381 ",
        "REDIS_SENTINEL_MASTER": "hera",
        "REDIS_URL": "redis://:secret@ignored:6379/3",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.resolved_session_type == "redis"  # REDIS_URL still selects Redis
    target = redis_target(settings)
    assert target.mode == "sentinel"
    assert target.sentinel_master == "hera"
    assert list(target.sentinels) == [("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    assert target.url == "redis://:secret@ignored:6379/3"  # its password and database


async def test_the_masters_password_and_database_reach_both_sentinel_clients() -> None:
    """REDIS_URL's password and database go to the master the sentinels name, for the
    sessions' client and for the rate limiter's (read from the clients' connection options:
    no connection is made)."""
    settings = Settings(
        _env_file=None,
        redis_mode="sentinel",
        redis_sentinels="127.0.0.1:1",
        redis_sentinel_master="hera",
        redis_url="redis://:s3cret@ignored:6379/3",
        rate_limit_turns="10/minute",
    )
    target = redis_target(settings)
    client = create_redis_client(target)
    limiter = build_rate_limiter(settings, target)
    assert limiter.strategy is not None
    # `limits` keeps its master client as its redis-py bridge's `storage`.
    limiter_master = limiter.strategy.storage.bridge.storage  # type: ignore[attr-defined]
    try:
        for options in (
            client.connection_pool.connection_kwargs,
            limiter_master.connection_pool.connection_kwargs,
        ):
            assert options["password"] == "s3cret"
            assert options["db"] == 3
    finally:
        await client.aclose()
        await limiter.aclose()


# ------------------------------------------------------------------ failover
@pytest.mark.slow
async def test_a_sentinel_failover_is_followed_within_15_s_with_the_replicated_data(
    tmp_path: Path,
) -> None:
    async with entered_in_thread(redis_sentinel(tmp_path / "redis")) as deployment:
        settings = Settings(
            _env_file=None,
            session_type="redis",
            redis_mode="sentinel",
            redis_sentinels=deployment.addresses,
            redis_sentinel_master=deployment.master_name,
            redis_url=UNUSED_URL,
            redis_namespace="hera-sentinel",
            hera_data_dir=tmp_path / "data",
            storage_mode="local",
            llm_provider="offline",
            rate_limit_turns="1000/minute",  # limits on: their sentinel storage too
            rate_limit_sessions="1000/minute",
        )
        async with running_app(settings) as api:
            sid = json_of(await api.post("/api/sessions"), 201)["session_id"]
            for line in SCRIPT[:3]:
                json_of(await api.post(f"/api/sessions/{sid}/messages", json={"message": line}))
            before = json_of(await api.get(f"/api/sessions/{sid}/status"))
            summary = json_of(await api.get(f"/api/sessions/{sid}"))
            assert len(before["conversation_history"]) == 6 and before["user_profile"]
            assert json_of(await api.get("/api/ready"))["status"] == "ok"

            def replicated() -> int:
                with deployment.master.client() as client:
                    return int(client.execute_command("WAIT", 1, 2000))

            assert await asyncio.to_thread(replicated) >= 1  # the replica has every write
            deployment.master.kill()
            killed = time.monotonic()
            seen: dict[int, int] = {}

            async def answers_again() -> bool:
                call = api.get(f"/api/sessions/{sid}/status")
                response = await asyncio.wait_for(call, REQUEST_SECONDS)
                assert_200_or_store_unavailable(response, "status")
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                return response.status_code == 200

            await eventually(
                answers_again, within=FOLLOW_SECONDS, what="the app following the promotion"
            )
            followed = time.monotonic() - killed
            print(f"\nsentinel: 200 again {followed:.1f} s after the kill; answers {seen}")
            assert followed <= FOLLOW_SECONDS

            port = await asyncio.to_thread(deployment.current_master_port)
            assert port == deployment.replica.port  # the replica was promoted ...
            after = json_of(await api.get(f"/api/sessions/{sid}/status"))
            assert after == before  # ... with every turn written before the kill
            assert json_of(await api.get(f"/api/sessions/{sid}")) == summary
            turn = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[3]})
            history = json_of(turn)["conversation_history"]
            assert history[:6] == before["conversation_history"] and len(history) == 8
            with deployment.replica.client() as promoted:  # the new turn is on the new master
                log = f"hera-sentinel:{{{sid}}}:log:history"
                assert await asyncio.to_thread(promoted.llen, log) == 8
            assert (await api.post("/api/sessions")).status_code == 201

            async def ready() -> bool:
                response = await api.get("/api/ready")
                assert response.status_code in (200, 503), response.text
                return response.status_code == 200

            await eventually(ready, within=FOLLOW_SECONDS, what="/api/ready answering 200")
            assert json_of(await api.get("/api/ready"))["checks"] == {
                "sessions": "ok",
                "blobs": "ok",
                "users": "ok",
            }
