"""Writer processes for the crash test, forked from one process that has imported everything.

    python -m tests.reliability._file_writer <sessions_root>

Each line read on stdin is a session id: the process forks a writer child that prints
"ready <pid>" and then loops `update` (a ~200 KB Japanese document carrying a counter) and
`append` (one log entry with the same counter) on that session through the real
`FileSessionRepository`, until it is killed. The parent reaps it and prints
"reaped <pid> <exit code>" (negative: the signal). Forking saves the ~0.5 s interpreter start
per kill, so many kills fit in a few seconds. EOF on stdin ends the process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from app.repositories.file_sessions import FileSessionRepository

BODY = "未来の家族と過ごす穏やかな日々の記録、" * 3500  # 3 bytes a character: ~200 KB
MAX_WRITES = 100_000  # a bound only: the parent kills the writer long before


def document(counter: int) -> dict[str, Any]:
    """The document of round `counter`: the counter, and a body that repeats it at both ends."""
    return {"counter": counter, "text": f"{counter}:{BODY}:{counter}"}


def entry(counter: int) -> dict[str, Any]:
    return {"speaker": "user", "n": counter, "message": f"第{counter}回の書き込み。" * 20}


async def write_until_killed(root: Path, session_id: str) -> None:
    repo = FileSessionRepository(root=root)
    snap = await repo.load(session_id=session_id, docs=["profile"])
    counter = int(snap.doc("profile").get("counter", 0))
    print(f"ready {os.getpid()}", flush=True)
    for _ in range(MAX_WRITES):
        counter += 1
        await repo.update(session_id=session_id, doc="profile", fields=document(counter))
        await repo.append(session_id=session_id, log="history", entries=[entry(counter)])


def main() -> None:
    root = Path(sys.argv[1])
    for line in sys.stdin:
        session_id = line.strip()
        pid = os.fork()
        if pid == 0:  # the writer child
            code = 0
            try:
                asyncio.run(write_until_killed(root, session_id))
            except BaseException as exc:
                print(f"writer failed: {exc!r}", flush=True)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(f"reaped {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
