"""Any worker serves any request: the whole journey with requests spread over processes.

(a) Two `uvicorn app.main:app` processes on one Redis namespace and one S3 bucket (moto),
    every request going to the other process than the one before.
(b) One `uvicorn --workers 2` on the default file + disk stores, a new connection per request,
    and both worker pids seen in the answers.

Each step checks that every process shows exactly what the previous steps wrote (history
lengths exact, images byte-identical), that the family is the stored one (a mark planted on
the stored personas survives the whole chat, so no process rebuilt them), and that there is
one plan: one proposal, one acceptance, the same story and letter from every process.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.repositories.base import SessionRepository
from app.repositories.file_sessions import FileSessionRepository
from tests.reliability._journey import Spread, delete_everywhere, run_journey
from tests.reliability._servers import hera_servers, server_env
from tests.reliability.conftest import CloudPair
from tests.support.polling import entered_in_thread

pytestmark = pytest.mark.slow


async def test_journey_alternating_between_two_processes_on_redis_and_s3(
    cloud_pair: CloudPair,
    pair_clients: list[httpx.AsyncClient],
    pair_sessions: SessionRepository,
) -> None:
    spread = Spread(pair_clients)
    result = await run_journey(spread, pair_sessions)
    assert set(spread.served_by) == set(cloud_pair.urls)
    await delete_everywhere(spread, result["session_id"])


async def test_journey_over_one_server_with_two_workers_on_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = server_env(HERA_DATA_DIR=str(data_dir))
    async with entered_in_thread(
        hera_servers(tmp_path / "server", env, workers=2, app_ref="tests.reliability.pid_app:app")
    ) as (server,):
        # No keep-alive: every request opens a new connection, which either worker may accept.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60.0) as client:
            spread = Spread([client])
            sessions = FileSessionRepository(root=data_dir / "sessions")
            result = await run_journey(spread, sessions)
            await delete_everywhere(spread, result["session_id"])
        pids = set(spread.served_by)
        assert len(pids) == 2, f"answers came from {dict(spread.served_by)}:\n{server.log()}"
