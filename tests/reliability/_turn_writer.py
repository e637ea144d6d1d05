"""Writer processes for the crash test: real interview turns until killed.

    python -m tests.reliability._turn_writer '<StoreSpec json>'

Each line read on stdin is a session id: the process forks a writer child that prints
"ready <pid>" and then runs interview turns on that session through the real `HeraAgent`
and store (a scripted brain: turn n says "reply n" and extracts location "町n" plus a long
lifestyle text, so every commit is several KB and a kill can tear it), until it is killed.
The parent reaps it and prints "reaped <pid> <exit code>". Forking saves an interpreter
start per kill. EOF on stdin ends the process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from app.agents.brains import InterviewTurn
from app.agents.hera import HeraAgent
from tests.support.stores import StoreSpec, build_session_repo

MAX_TURNS = 100_000  # a bound only: the parent kills the writer long before
FILLER = "家族と過ごす穏やかな日々。" * 120  # ~1,400 characters, ~4 KB per message


def message(n: int) -> str:
    return f"turn {n}: {FILLER}"


class ScriptedBrain:
    """Turn n: the reply names n; the profile gets location 町n (and a long text)."""

    async def interview_turn(self, *, message: str, **_: Any) -> InterviewTurn:
        n = int(message.split(":", 1)[0].removeprefix("turn "))
        return InterviewTurn(f"reply {n}", {"location": f"町{n}", "lifestyle": FILLER[:400]})


async def write_until_killed(spec: StoreSpec, session_id: str) -> None:
    repo = await build_session_repo(spec, lock_ttl_seconds=0.5, lock_wait_seconds=30)
    agent = HeraAgent(sessions=repo, brain=ScriptedBrain(), max_message_chars=2000)
    snap = await repo.load(session_id=session_id, docs=[], logs=["history"])
    n = len(snap.log("history")) // 2
    print(f"ready {os.getpid()}", flush=True)
    for _ in range(MAX_TURNS):
        await agent.handle_message(session_id, message(n))
        n += 1


def main() -> None:
    spec = StoreSpec.from_json(sys.argv[1])
    for line in sys.stdin:
        session_id = line.strip()
        pid = os.fork()
        if pid == 0:  # the writer child
            code = 0
            try:
                asyncio.run(write_until_killed(spec, session_id))
            except BaseException as exc:
                print(f"writer failed: {exc!r}", flush=True)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(f"reaped {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
