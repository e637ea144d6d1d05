"""The real process: `uvicorn app.main:app` starts, refuses bad configuration, survives Redis down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.support.polling import wait_for_http
from tests.support.services import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
UVICORN = [sys.executable, "-m", "uvicorn", "--app-dir", str(REPO), "app.main:app"]
UVICORN += ["--host", "127.0.0.1"]
START_DEADLINE = 30.0  # seconds: a cold interpreter importing FastAPI on a slow CI box
EXIT_DEADLINE = 30.0
READY_DEADLINE = 10.0  # "within a few seconds": the ready ping gives up after 2 s


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def server_env(data_dir: Path, **variables: str) -> dict[str, str]:
    """The runner's environment minus every Hera variable, plus the case's own."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env.update(HERA_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **variables)
    return env


def launch(tmp_path: Path, port: int, **variables: str) -> tuple[subprocess.Popen[bytes], Path]:
    # An empty working directory so no `.env` of the checkout leaks in; --app-dir finds `app`.
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    stderr_path = tmp_path / "server.stderr"
    with (tmp_path / "server.stdout").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [*UVICORN, "--port", str(port)],
            cwd=workdir,
            env=server_env(tmp_path / "hera-data", **variables),
            stdout=out,
            stderr=err,
        )
    return process, stderr_path


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_server(tmp_path: Path, **variables: str) -> Iterator[Server]:
    """A started server whose /api/health answered; always terminated afterwards."""
    port = free_port()
    process, stderr_path = launch(tmp_path, port, **variables)
    server = Server(process, f"http://127.0.0.1:{port}", stderr_path)
    try:
        try:
            wait_for_http(
                f"{server.base_url}/api/health",
                within=START_DEADLINE,
                process=process,
                ok=lambda status: True,  # any answer: readiness is what some cases test
                describe=server.stderr,
            )
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(str(exc))
        yield server
    finally:
        stop(process)


def config_error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("configuration error: ")]


# ------------------------------------------------------------------ (a) defaults
def test_default_configuration_serves_health_and_ready_and_creates_the_data_dir(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "hera-data"
    assert not data_dir.exists()

    with running_server(tmp_path) as server:
        health = httpx.get(f"{server.base_url}/api/health", timeout=5.0)
        ready = httpx.get(f"{server.base_url}/api/ready", timeout=5.0)

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"sessions": "ok", "blobs": "ok", "users": "ok"}
    assert (data_dir / "sessions").is_dir()
    assert (data_dir / "blobs").is_dir()


# ------------------------------------------------------------------ (b) invalid configuration
@pytest.mark.parametrize(
    ("variables", "named"),
    [
        pytest.param(
            {"SESSION_TYPE": "redis", "STORAGE_MODE": "bogus"},
            ["SESSION_TYPE", "STORAGE_MODE"],
            id="missing-redis-url-and-unknown-storage-mode",
        ),
        pytest.param(
            {"SESSION_TYPE": "redis", "STORAGE_MODE": "cloud"},
            ["SESSION_TYPE", "CLOUD_STORAGE_TYPE"],
            id="two-missing-companion-variables",
        ),
        pytest.param(
            {"SESSION_TYPE": "bogus", "STORAGE_MODE": "bogus"},
            ["SESSION_TYPE", "STORAGE_MODE"],
            id="two-unknown-values",
        ),
    ],
)
def test_invalid_configuration_exits_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, variables: dict[str, str], named: list[str]
) -> None:
    process, stderr_path = launch(tmp_path, free_port(), **variables)
    try:
        returncode = process.wait(timeout=EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not refuse the configuration within {EXIT_DEADLINE}s")
    finally:
        stop(process)
    stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
    stdout = (tmp_path / "server.stdout").read_text(encoding="utf-8", errors="replace")

    assert returncode == 2, (returncode, stderr)
    assert "Traceback" not in stderr
    assert "Traceback" not in stdout
    lines = config_error_lines(stderr)
    assert len(lines) == len(named), stderr
    for variable in named:
        assert sum(variable in line for line in lines) == 1, (variable, lines)
    assert not (tmp_path / "hera-data").exists(), "nothing may be created on refusal"


# ------------------------------------------------------------------ (c) Redis down
def test_redis_down_at_start_up_still_serves_health_and_reports_sessions_down(
    tmp_path: Path,
) -> None:
    closed_port = free_port()  # nothing listens there

    with running_server(tmp_path, REDIS_URL=f"redis://127.0.0.1:{closed_port}/0") as server:
        health = httpx.get(f"{server.base_url}/api/health", timeout=5.0)
        started = time.monotonic()
        ready = httpx.get(f"{server.base_url}/api/ready", timeout=READY_DEADLINE)
        elapsed = time.monotonic() - started
        still_running = server.process.poll() is None

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 503, ready.text
    assert elapsed < READY_DEADLINE
    body = ready.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["code"], str) and body["code"]
    assert body["checks"] == {"sessions": "down", "blobs": "ok", "users": "down"}  # one Redis
    assert still_running, "the process must stay up while Redis is down"
