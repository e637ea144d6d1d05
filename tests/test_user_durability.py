"""Whether the Redis behind the durable tier keeps what it is given across its restart.

Each case starts a redis-server of its own on a free loopback port with the persistence it
names (the shared test server's configuration is never touched), runs the app on it, and
reads what start-up logged and what `/api/ready` reports.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.settings import Settings
from tests.api.accounts import running
from tests.support.polling import wait_until
from tests.support.services import free_port, unavailable

WARNING = "Redis keeps nothing on disk"


@contextmanager
def own_redis(directory: Path, *flags: str) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    assert binary is not None
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), *flags]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until(answers, within=10, what="the test's own redis-server", setup=True)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--save", "", "--appendonly", "no"), "none"),
        (("--save", "900 1", "--appendonly", "no"), "rdb"),
        (("--save", "", "--appendonly", "yes"), "aof"),
    ],
    ids=["no-persistence", "rdb", "aof"],
)
async def test_ready_says_whether_user_records_survive_a_redis_restart_and_start_up_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, flags: tuple[str, ...], expected: str
) -> None:
    with own_redis(tmp_path / "redis", *flags) as url:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            hera_data_dir=tmp_path / "data",
            redis_url=url,
            llm_provider="offline",
        )
        with caplog.at_level(logging.WARNING, logger="app.container"):
            async with running(settings) as api:
                ready = await api.get("/api/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["user_records"] == expected
        warned = [r for r in caplog.records if WARNING in r.getMessage()]
        assert len(warned) == (1 if expected == "none" else 0), caplog.text
