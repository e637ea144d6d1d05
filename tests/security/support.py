"""Helpers of the hostile-input tests: raw ASGI requests, store snapshots, store-call spies."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from starlette.types import Message

from tests.api.conftest import ApiClient, open_client, stack_settings

# File + disk always; Redis sessions + S3 blobs (moto) when those services are reachable.
STACKS = ["file-disk", "redis-s3"]


def new_canary() -> str:
    """A marker no store, file or key should ever contain (embedded in hostile input)."""
    return f"cnry{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------------------ the client
@asynccontextmanager
async def hostile_client(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest, **overrides: Any
) -> AsyncIterator[ApiClient]:
    """An app whose data dir sits two levels below `tmp_path`, so that a traversal of a few
    `..` would land inside `tmp_path` (and show up in its snapshot) instead of elsewhere."""
    overrides.setdefault("hera_data_dir", tmp_path / "outer" / "inner" / "data")
    settings = stack_settings(stack, tmp_path, request, **overrides)
    async for client in open_client(settings):
        yield client


# ------------------------------------------------------------------------------ raw requests
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def raw_request(
    app: FastAPI,
    method: str,
    raw_path: bytes,
    *,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> RawResponse:
    """Send a request whose path bytes reach the app exactly as a server would pass them.

    httpx normalises `..` segments away before sending; servers such as uvicorn do not, they
    percent-decode the path into `scope["path"]` and keep the bytes in `raw_path`.
    """
    path, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path.decode("ascii")),  # what uvicorn does
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"hera.test"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("hera.test", 80),
        "state": {},
    }
    sent = False
    done = asyncio.Event()
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    headers_out = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return RawResponse(start["status"], headers_out, b"".join(chunks))


def assert_json_error(status: int, headers: dict[str, str], body: Any, *, where: str) -> None:
    assert headers.get("content-type", "").startswith("application/json"), where
    assert isinstance(body, dict), where
    assert isinstance(body.get("error"), str) and body["error"], where
    assert isinstance(body.get("code"), str) and body["code"], where


# ------------------------------------------------------------------------------ snapshots
@dataclass(frozen=True)
class StoreState:
    files: dict[str, tuple[bool, int, int]]  # relative path -> (is_dir, size, mtime_ns)
    redis_keys: frozenset[bytes] = frozenset()
    s3_keys: frozenset[str] = frozenset()


@dataclass
class StoreProbe:
    """Everything a request could have written: the tmp tree, the Redis namespace, the bucket."""

    root: Path
    client: ApiClient
    moto_url: str | None = None
    _redis: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        settings = self.client.settings
        if settings.resolved_session_type == "redis":
            import redis

            assert settings.redis_url is not None
            self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    def snapshot(self) -> StoreState:
        files: dict[str, tuple[bool, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames]:
                path = Path(dirpath) / name
                stat = path.lstat()
                files[str(path.relative_to(self.root))] = (
                    path.is_dir(),
                    stat.st_size,
                    stat.st_mtime_ns,
                )
        return StoreState(files, self._redis_keys(), self._s3_keys())

    def _redis_keys(self) -> frozenset[bytes]:
        if self._redis is None:
            return frozenset()
        pattern = f"{self.client.settings.redis_namespace}*"
        return frozenset(self._redis.scan_iter(match=pattern, count=500))

    def _s3_keys(self) -> frozenset[str]:
        settings = self.client.settings
        if settings.resolved_blob_type != "s3" or self.moto_url is None:
            return frozenset()
        from tests.support.servers import s3_client

        pages = s3_client(self.moto_url).get_paginator("list_objects_v2")
        return frozenset(
            obj["Key"]
            for page in pages.paginate(Bucket=settings.s3_bucket_name)
            for obj in page.get("Contents", [])
        )

    def canary_hits(self, canary: str) -> list[str]:
        """Every file name, Redis key (whole database) or S3 key that contains `canary`."""
        hits = [f"file:{p}" for p in self.snapshot().files if canary in p]
        if self._redis is not None:
            hits += [f"redis:{k!r}" for k in self._redis.scan_iter(match=f"*{canary}*", count=500)]
        if self.moto_url is not None:
            from tests.support.servers import s3_client

            s3 = s3_client(self.moto_url)
            for bucket in s3.list_buckets().get("Buckets", []):
                pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
                hits += [
                    f"s3:{bucket['Name']}/{obj['Key']}"
                    for page in pages
                    for obj in page.get("Contents", [])
                    if canary in obj["Key"]
                ]
        return hits


def moto_url_of(request: pytest.FixtureRequest, stack: str) -> str | None:
    if not stack.endswith("-s3"):
        return None
    server = request.getfixturevalue("moto_server")
    return None if isinstance(server, str) else str(server.url)


# ------------------------------------------------------------------------------ spies
_SESSION_METHODS = (
    "create", "create_once", "exists", "get_meta", "load", "commit", "lock",
    "delete",
)  # fmt: skip
_BLOB_METHODS = (
    "put", "stat", "exists", "open", "delete", "delete_prefix", "list", "presigned_url",
)  # fmt: skip


@contextmanager
def store_calls(client: ApiClient) -> Iterator[list[str]]:
    """Record every call to the session and blob repositories while the block runs."""
    services = client.app.state.services
    calls: list[str] = []
    patched: list[tuple[Any, str]] = []

    def spy(kind: str, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{kind}.{name}({kwargs})")
            return real(*args, **kwargs)

        return wrapper

    for kind, repo, names in (
        ("sessions", services.sessions, _SESSION_METHODS),
        ("blobs", services.blobs, _BLOB_METHODS),
    ):
        for name in names:
            setattr(repo, name, spy(kind, name, getattr(repo, name)))
            patched.append((repo, name))
    try:
        yield calls
    finally:
        for repo, name in patched:
            delattr(repo, name)  # back to the class's method
