"""Real S3 and GCS endpoints on loopback: moto's server and gcp-storage-emulator.

moto runs as a child process (its own GIL, so 20 MB uploads do not stall the test's loop);
the GCS emulator runs in this process behind a threading HTTP server (see `_EmulatorHandler`).
"""

from __future__ import annotations

import atexit
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

from tests.support.polling import wait_until
from tests.support.services import free_port

START_TIMEOUT = 30.0
REGION = "us-east-1"
ACCESS_KEY = SECRET_KEY = "testing"


def wait_until_answering(url: str, *, deadline: float, alive: Any = None) -> None:
    """Poll `url` until any HTTP answer arrives; give up at `deadline` (time.monotonic())."""

    def answered() -> bool:
        if alive is not None and not alive():
            raise RuntimeError(f"server behind {url} exited while starting")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered, just not with 2xx
        except OSError:
            return False

    within = max(0.0, deadline - time.monotonic())
    wait_until(answered, within=within, what=f"{url} answering", setup=True)


# ------------------------------------------------------------------------------ moto (S3)
@dataclass
class MotoHandle:
    url: str
    process: subprocess.Popen[bytes]
    log: BinaryIO

    def s3_params(self, bucket: str) -> dict[str, Any]:
        """Keyword arguments for `S3BlobRepository.open` (add `key_prefix` as needed)."""
        return {
            "bucket": bucket,
            "endpoint_url": self.url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }

    def hera_settings(self, bucket: str) -> dict[str, str]:
        """Hera's settings (field names; upper-case them for an environment) for `bucket`."""
        return {
            "storage_mode": "cloud",
            "cloud_storage_type": "s3",
            "s3_bucket_name": bucket,
            "s3_endpoint_url": self.url,
            "aws_region": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def start_moto_server(attempts: int = 3, *, port: int | None = None) -> MotoHandle:
    """moto in server mode (its in-process mock does not cover aiobotocore, moto #8513).

    `port` restarts it where it was (outage tests); by default a free port is picked."""
    error: Exception | None = None
    for _ in range(1 if port is not None else attempts):  # a free port may be taken meanwhile
        chosen = port if port is not None else free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(chosen)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        handle = MotoHandle(f"http://127.0.0.1:{chosen}", process, log)
        try:
            wait_until_answering(
                f"{handle.url}/moto-api/",
                deadline=time.monotonic() + START_TIMEOUT,
                alive=lambda p=process: p.poll() is None,
            )
        except (RuntimeError, TimeoutError) as exc:
            handle.stop()
            error = exc
            continue
        atexit.register(handle.stop)  # in case the session ends without teardown
        return handle
    raise RuntimeError(f"moto server did not start: {error}")


def s3_client(url: str) -> Any:
    """A plain (sync) boto3 client on the moto server, for arranging and inspecting."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def create_s3_bucket(url: str, bucket: str) -> None:
    s3_client(url).create_bucket(Bucket=bucket)


# ------------------------------------------------------------------------------ GCS emulator
class _EmulatorHandler(BaseHTTPRequestHandler):
    """The emulator's router behind a threading server.

    The emulator ships a single-threaded server: a reader that holds a large download open
    would block every other request. Its storage is not thread-safe either, so requests are
    routed one at a time under a lock into a buffer, and the buffer is written outside it.
    """

    def __init__(self, storage: Any, lock: threading.Lock, *args: Any) -> None:
        self.storage = storage  # the emulator's Router reads it from the handler
        self._lock = lock
        super().__init__(*args)

    def _route(self, method: str) -> None:
        from gcp_storage_emulator.server import Router

        wire, buffer = self.wfile, io.BytesIO()
        self.wfile = buffer
        try:
            with self._lock:
                Router(self).handle(method)
        finally:
            self.wfile = wire
        wire.write(buffer.getvalue())

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        return None


@dataclass
class GCSHandle:
    url: str
    server: ThreadingHTTPServer
    thread: threading.Thread = field(repr=False)

    def hera_settings(self, bucket: str) -> dict[str, str]:
        """Hera's settings (field names; upper-case them for an environment) for `bucket`."""
        return {
            "storage_mode": "cloud",
            "cloud_storage_type": "gcs",
            "gcs_bucket_name": bucket,
            "storage_emulator_host": self.url,
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_gcs_emulator(port: int = 0) -> GCSHandle:
    """gcp-storage-emulator (in memory, fresh) on a loopback port; `.url` includes the scheme.

    Port 0 lets the OS pick a free one; a given port restarts it there (outage tests)."""
    from gcp_storage_emulator.storage import Storage

    handler = partial(_EmulatorHandler, Storage(use_memory_fs=True), threading.Lock())
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="gcs-emulator", daemon=True)
    thread.start()
    handle = GCSHandle(f"http://127.0.0.1:{server.server_address[1]}", server, thread)
    try:
        wait_until_answering(
            f"{handle.url}/storage/v1/b", deadline=time.monotonic() + START_TIMEOUT
        )
    except BaseException:
        handle.stop()
        raise
    return handle


def _gcs_json(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def create_gcs_bucket(url: str, bucket: str) -> None:
    _gcs_json(f"{url}/storage/v1/b?project=test", "POST", {"name": bucket})


def list_gcs_names(url: str, bucket: str) -> list[str]:
    """Every object name in the bucket, straight from the JSON API."""
    listing = _gcs_json(f"{url}/storage/v1/b/{bucket}/o")
    return [item["name"] for item in listing.get("items") or []]
