"""Child process for lock tests: take a session lock, say so, then hold it until killed."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.support.stores import StoreSpec, build_session_repo


async def main() -> None:
    spec = StoreSpec.from_json(sys.argv[1])
    session_id = sys.argv[2]
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    repo = await build_session_repo(spec, **options)
    async with repo.lock(session_id=session_id, wait=30):
        print("locked", flush=True)
        await asyncio.Event().wait()  # hold until the parent kills this process


if __name__ == "__main__":
    asyncio.run(main())
