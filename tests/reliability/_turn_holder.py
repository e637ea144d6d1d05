"""Child process: start a turn on a session and get killed in the middle of it.

It takes the session's lock through the real repository (short lock TTL, heartbeat running),
persists the user's words the way a turn does first, says "locked", then waits to be killed.

    python -m tests.reliability._turn_holder '<StoreSpec json>' <session_id> <lock_ttl_seconds>
"""

from __future__ import annotations

import asyncio
import sys

from app.repositories.base import utcnow
from tests.support.stores import StoreSpec, build_session_repo
from tests.support.writes import append

ORPHAN_MESSAGE = "(this turn's process was killed)"


async def main() -> None:
    spec = StoreSpec.from_json(sys.argv[1])
    session_id = sys.argv[2]
    repo = await build_session_repo(spec, lock_ttl_seconds=float(sys.argv[3]))
    async with repo.lock(session_id=session_id, wait=30):
        entry = {"speaker": "user", "message": ORPHAN_MESSAGE, "timestamp": utcnow().isoformat()}
        await append(repo, session_id=session_id, log="history", entries=[entry])
        print("locked", flush=True)
        await asyncio.Event().wait()  # mid-turn until the parent sends SIGKILL


if __name__ == "__main__":
    asyncio.run(main())
