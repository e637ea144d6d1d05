"""Real `uvicorn` processes for the reliability tests (loopback only, always stopped).

Each server runs from an empty working directory (no `.env` of the checkout leaks in) with
the runner's environment minus every Hera variable, plus the case's own. Its output goes to a
file, shown in failure messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings
from tests.support.polling import wait_for_http
from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[2]
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
START_DEADLINE = 45.0  # seconds: cold interpreters importing FastAPI on a busy 2-core box
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3  # another process may take the free port between probe and bind


@dataclass
class HeraServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return text[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)


def server_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    # Limits off unless a case turns them on: these servers prove concurrency, and one test
    # client sends far more turns a minute than a person would.
    env.update(PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", LLM_PROVIDER="offline", RATE_LIMITS="off")
    env.update(variables)
    return env


def _launch(
    workdir: Path,
    name: str,
    app_ref: str,
    workers: int,
    env: dict[str, str],
    extra_args: Sequence[str] = (),
) -> HeraServer:
    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(REPO), app_ref,
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    if workers > 1:
        command += ["--workers", str(workers)]
    command += list(extra_args)
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    return HeraServer(process, f"http://127.0.0.1:{port}", log_path)


def _wait_healthy(server: HeraServer, deadline: float) -> bool:
    """True once /api/health answers 200; False if the process exited first."""
    try:
        wait_for_http(
            f"{server.url}/api/health",
            within=max(0.0, deadline - time.monotonic()),
            process=server.process,
            describe=server.log,
        )
    except RuntimeError:
        return False
    return True


@contextmanager
def hera_servers(
    workdir: Path,
    env: dict[str, str],
    *,
    count: int = 1,
    workers: int = 1,
    app_ref: str = "app.main:app",
    extra_args: Sequence[str] = (),
) -> Iterator[list[HeraServer]]:
    """Start `count` servers side by side (each with `workers` workers) and wait until healthy."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        servers: list[HeraServer] = []
        for index in range(count):
            server = _launch(workdir, f"server{index}", app_ref, workers, env, extra_args)
            stack.callback(server.stop)
            servers.append(server)
        deadline = time.monotonic() + START_DEADLINE
        for index, server in enumerate(servers):
            attempts = 1
            while not _wait_healthy(server, deadline):
                if attempts >= PORT_ATTEMPTS:
                    raise RuntimeError(f"server exited while starting:\n{server.log()}")
                attempts += 1
                server = _launch(workdir, f"server{index}", app_ref, workers, env, extra_args)
                stack.callback(server.stop)
                servers[index] = server
        yield servers
