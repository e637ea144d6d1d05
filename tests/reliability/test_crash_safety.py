"""The file store survives a writer killed at any moment (SIGKILL, no clean-up at all).

A writer process loops `update` (a ~200 KB document carrying a counter) and `append` (one
log entry per round) on one session; it is killed after a random 5-80 ms, 30 times over (a
new writer each time, continuing from the stored counter). After every kill a fresh
repository reads the session:
- every document is whole, valid JSON whose body carries its counter at both ends (never a
  mix of two versions, never truncated);
- the log: every complete line parses (only a torn last fragment may be skipped), earlier
  entries are exactly as they were, and the killed writer's entries continue the counter
  one by one; the document holds the last logged round or the one after it (killed between
  its two writes) — so the counter only ever moves forward, old or new, nothing between;
- temp files a killed writer leaves behind are never read as documents or sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from app.repositories.base import DOC_NAMES
from app.repositories.file_sessions import FileSessionRepository
from tests.reliability._file_writer import BODY, entry
from tests.reliability._servers import REPO

pytestmark = pytest.mark.slow

KILLS = 30
KILL_AFTER_MS = (5, 80)
LINE_DEADLINE = 30.0  # seconds to wait for one line from the writer process


async def _read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), LINE_DEADLINE)
    if not line:
        raise AssertionError(f"the writer process ended (exit {proc.returncode})")
    return line.decode().strip()


def _log_lines(path: Path) -> list[dict[str, Any]]:
    """Parse the JSONL file: every newline-terminated line must parse; a fragment after the
    last newline (a torn append) is the only thing allowed to be skipped."""
    raw = path.read_bytes() if path.exists() else b""
    *complete, _fragment = raw.split(b"\n")
    return [json.loads(line) for line in complete]


async def test_a_writer_killed_at_random_moments_never_leaves_torn_files(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    repo = FileSessionRepository(root=root)
    sid = (await repo.create()).session_id
    folder = root / sid
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    context = f"(random seed {seed})"

    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.reliability._file_writer", str(root)],
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    counter, advanced = 0, 0
    log_before: list[dict[str, Any]] = []
    try:
        for kill in range(KILLS):
            proc.stdin.write(f"{sid}\n".encode())
            await proc.stdin.drain()
            word, pid = (await _read_line(proc)).split()
            assert word == "ready", f"kill {kill}: {word} {pid} {context}"
            # The random interrupt point: the writer is somewhere in its update/append loop.
            await asyncio.sleep(rng.uniform(*KILL_AFTER_MS) / 1000)
            os.kill(int(pid), signal.SIGKILL)
            assert await _read_line(proc) == f"reaped {pid} {-signal.SIGKILL}", context

            fresh = FileSessionRepository(root=root)  # nothing cached from before the kill
            snap = await fresh.load(session_id=sid, logs=["history"])  # every document
            doc = snap.doc("profile")
            assert doc == json.loads((folder / "profile.json").read_bytes()), context
            assert doc["text"] == f"{doc['counter']}:{BODY}:{doc['counter']}", context

            log = snap.log("history")
            assert log == _log_lines(folder / "history.jsonl"), context
            assert log[: len(log_before)] == log_before, f"earlier entries changed {context}"
            added = log[len(log_before) :]
            assert all(e == entry(e["n"]) for e in added), context
            # This writer went on from the stored counter: one entry per finished round, in
            # order; the document is at its last round, or one further (killed in between).
            rounds = [e["n"] for e in added]
            assert rounds == list(range(counter + 1, counter + 1 + len(rounds))), context
            last = rounds[-1] if rounds else counter
            assert doc["counter"] in (last, last + 1), f"{doc['counter']} vs {last} {context}"
            advanced += doc["counter"] > counter
            counter, log_before = doc["counter"], log
            assert (await fresh.get_meta(session_id=sid)).session_id == sid
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), LINE_DEADLINE)  # EOF ends it
        except TimeoutError:
            proc.kill()
            await proc.wait()

    # The kills landed while the writer was working, not before or after it.
    assert advanced >= KILLS // 2, f"only {advanced} of {KILLS} writers got a write done {context}"
    assert counter >= KILLS // 2
    # Some kills landed inside an atomic write: the temp file it was writing is still there.
    leftovers = list(folder.glob(".*.tmp"))
    assert leftovers, "no kill interrupted a document write; the test proved little"

    # Temp files (the killed writers', and decoys holding other valid JSON) are never documents.
    decoys = [folder / f".profile.json.{'0' * 32}.tmp", folder / "state.json.tmp"]
    for decoy in decoys:
        decoy.write_text(json.dumps({"counter": -1, "text": "decoy"}), encoding="utf-8")
    fresh = FileSessionRepository(root=root)
    snap = await fresh.load(session_id=sid)  # every document
    assert snap.doc("profile")["counter"] == counter
    assert all(snap.doc(name) == {} for name in DOC_NAMES if name != "profile")  # type: ignore[arg-type]
    assert [i async for i in fresh.iter_ids()] == [sid]
