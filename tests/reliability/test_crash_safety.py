"""A turn survives its writer being killed at any moment (SIGKILL, no clean-up at all):
it is stored whole or not at all, on the file store and on Redis.

A writer process runs real interview turns (`HeraAgent`, a scripted brain) on one session
and is killed after a random 5-80 ms, 30 times over (a new writer each time, going on from
what is stored). After every kill a fresh repository reads the session:
- every user message is followed by its reply, turn numbers one by one from 0 (no half
  turn, no turn twice, nothing lost from before);
- the profile holds the location of the last stored turn: no profile change without its
  message (and none of a turn that did not land);
- the per-session message count spent with each turn equals the turns stored;
- the session loads, and (file store) a torn commit never hides the commits after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from tests.reliability._servers import REPO
from tests.reliability._turn_writer import message
from tests.support.polling import eventually
from tests.support.services import unavailable
from tests.support.stores import StoreSpec, build_session_repo

pytestmark = pytest.mark.slow

KILLS = 30
MIN_TURNS = 50
KILL_AFTER_MS = (5, 80)
LINE_DEADLINE = 30.0  # seconds to wait for one line from the writer process


async def _read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), LINE_DEADLINE)
    if not line:
        raise AssertionError(f"the writer process ended (exit {proc.returncode})")
    return line.decode().strip()


@pytest.fixture(params=["file", "redis"])
async def spec(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str | None) -> Any:
    if request.param == "file":
        yield StoreSpec("file", {"root": str(tmp_path / "sessions")})
        return
    if redis_url is None:
        unavailable("no Redis server reachable for the crash test")
    namespace = f"hera-crash-{uuid.uuid4().hex[:12]}"
    yield StoreSpec("redis", {"url": redis_url, "namespace": namespace})
    from tests.support.redis_support import cleanup_namespace

    await cleanup_namespace(redis_url, namespace)


def check_session(snap: Any, context: str) -> int:
    """The invariants of a session written only by whole turns; returns the turns stored."""
    history = snap.log("history")
    assert len(history) % 2 == 0, f"a user message without its reply {context}"
    turns = len(history) // 2
    for n in range(turns):
        user, hera = history[2 * n], history[2 * n + 1]
        assert (user["speaker"], user["message"]) == ("user", message(n)), context
        assert (hera["speaker"], hera["message"]) == ("hera", f"reply {n}"), context
    profile = snap.doc("profile")
    assert profile.get("location") == (f"町{turns - 1}" if turns else None), context
    usage = snap.doc("state").get("usage", {}).get("interview_messages", 0)
    assert usage == turns, f"{usage} messages counted for {turns} turns {context}"
    return turns


async def test_a_writer_killed_at_random_moments_leaves_only_whole_turns(
    spec: StoreSpec,
) -> None:
    repo = await build_session_repo(spec)
    sid = (await repo.create()).session_id
    await repo.aclose()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    context = f"({spec.kind}, random seed {seed})"

    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.reliability._turn_writer", spec.to_json()],
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    turns, advanced = 0, 0
    try:
        for kill in range(KILLS):
            proc.stdin.write(f"{sid}\n".encode())
            await proc.stdin.drain()
            word, pid = (await _read_line(proc)).split()
            assert word == "ready", f"kill {kill}: {word} {pid} {context}"
            # The random interrupt point: the writer is somewhere inside a turn.
            await asyncio.sleep(rng.uniform(*KILL_AFTER_MS) / 1000)
            os.kill(int(pid), signal.SIGKILL)
            assert await _read_line(proc) == f"reaped {pid} {-signal.SIGKILL}", context

            if spec.kind == "redis":
                # A killed holder's Redis lock lives out its (short) TTL; the next writer
                # would spend its whole life waiting for it.
                await eventually(
                    lambda: _lock_free(spec, sid),
                    within=10,
                    what="the killed writer's lock expiring",
                )
            fresh = await build_session_repo(spec)  # nothing cached from before the kill
            try:
                snap = await fresh.load(session_id=sid, logs=["history"])  # every document
            finally:
                await fresh.aclose()
            stored = check_session(snap, f"after kill {kill} {context}")
            assert stored >= turns, f"turns were lost {context}"
            advanced += stored > turns
            turns = stored
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), LINE_DEADLINE)  # EOF ends it
        except TimeoutError:
            proc.kill()
            await proc.wait()

    # The kills landed while turns were being written, not before or after the writers.
    assert advanced >= KILLS // 2, f"only {advanced} of {KILLS} writers stored a turn {context}"
    assert turns >= MIN_TURNS, f"only {turns} turns in all {context}"
    if spec.kind == "file":
        # Every line of the journal is one whole commit or a fragment a kill tore (it never
        # counts, and the commits after it start on lines of their own).
        lines = (Path(spec.params["root"]) / sid / "journal.jsonl").read_bytes().splitlines()
        whole = sum(1 for line in lines if _parses(line))
        assert whole == turns, context
        print(f"{len(lines) - whole} torn of {len(lines)} journal lines {context}")


async def _lock_free(spec: StoreSpec, sid: str) -> bool:
    client = redis.asyncio.Redis.from_url(spec.params["url"])
    try:
        return not await client.exists(f"{spec.params['namespace']}:{{{sid}}}:lock")
    finally:
        await client.aclose()


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


TEAR_SCRIPT = """
import asyncio, sys
from pathlib import Path
from app.repositories.base import Changes
from app.repositories.file_sessions import FileSessionRepository

async def main():
    repo = FileSessionRepository(root=Path(sys.argv[1]))
    huge = {"speaker": "user", "message": "x" * (64 * 1024 * 1024)}
    print("writing", flush=True)
    await repo.commit(session_id=sys.argv[2], changes=Changes().append("history", [huge]))
    print("done", flush=True)

asyncio.run(main())
"""
TEAR_ATTEMPTS = 5


async def test_a_commit_torn_by_a_kill_costs_no_other_commit(tmp_path: Path) -> None:
    """The real sequence: a writer is killed in the middle of writing a commit (a 64 MB one,
    so the kill lands inside the write), then the next commit is written. The fragment is
    skipped, and only it: the commits before and after it both load."""
    from app.repositories.base import Changes
    from app.repositories.file_sessions import FileSessionRepository

    root = tmp_path / "sessions"
    repo = FileSessionRepository(root=root)
    sid = (await repo.create()).session_id
    journal = root / sid / "journal.jsonl"
    expected: list[dict[str, Any]] = []
    torn = 0
    for attempt in range(TEAR_ATTEMPTS):
        before = {"speaker": "user", "message": f"before {attempt}"}
        await repo.commit(session_id=sid, changes=Changes().append("history", [before]))
        expected.append(before)
        size = journal.stat().st_size
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", TEAR_SCRIPT, str(root), sid,
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert await _read_line(proc) == "writing"
        # Kill as soon as the commit starts landing in the file.
        deadline = asyncio.get_running_loop().time() + LINE_DEADLINE
        while journal.stat().st_size == size and proc.returncode is None:
            assert asyncio.get_running_loop().time() < deadline, "the commit never started"
            await asyncio.sleep(0.001)
        proc.kill()
        await proc.wait()
        grown = journal.read_bytes()[size:]
        if grown.endswith(b"\n"):  # the write finished before the kill: no tear this time
            expected.append({"speaker": "user", "message": "x" * (64 * 1024 * 1024)})
        else:
            torn += 1
        after = {"speaker": "user", "message": f"after {attempt}"}
        fresh = FileSessionRepository(root=root)
        await fresh.commit(session_id=sid, changes=Changes().append("history", [after]))
        expected.append(after)
        snap = await fresh.load(session_id=sid, docs=[], logs=["history"])
        assert snap.log("history") == expected, f"attempt {attempt}"
    assert torn >= 1, f"no kill of {TEAR_ATTEMPTS} tore a commit; the test proved nothing"
