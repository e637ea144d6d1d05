"""Helpers of the sign-in tests: an app as a context manager, uploads, a write-spy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from app.settings import Settings
from tests.api.conftest import ApiClient, open_client
from tests.api.images import jpeg_photo


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[ApiClient]:
    """An app over `settings` for the block; several may share one store."""
    clients = open_client(settings)
    client = await anext(clients)
    try:
        yield client
    finally:
        async for _ in clients:  # the rest of open_client: lifespan exit and cleanup
            pass


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def create(api: ApiClient, headers: dict[str, str] | None = None) -> str:
    return str(ok(await api.post("/api/sessions", headers=headers or {}), 201)["session_id"])


async def upload_photo(
    api: ApiClient, sid: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    files = {"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
    return await api.post(f"/api/sessions/{sid}/photos/user", files=files, headers=headers or {})


# The repository methods that write; `lock` is not one (it guards, and leaves nothing).
_WRITES = {
    "sessions": ("commit", "create", "create_once", "delete"),
    "blobs": ("put", "delete", "delete_prefix"),
    "users": ("update", "restore", "add_tag", "remove_tag", "index_add", "index_remove", "delete"),
}


@contextmanager
def store_writes(client: ApiClient) -> Iterator[list[str]]:
    """Record every write to the session, blob and user repositories while the block runs."""
    services = client.app.state.services
    writes: list[str] = []
    patched: list[tuple[Any, str]] = []

    def spy(kind: str, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            writes.append(f"{kind}.{name}")
            return real(*args, **kwargs)

        return wrapper

    for kind, names in _WRITES.items():
        repo = getattr(services, kind)
        for name in names:
            setattr(repo, name, spy(kind, name, getattr(repo, name)))
            patched.append((repo, name))
    try:
        yield writes
    finally:
        for repo, name in patched:
            delattr(repo, name)  # back to the class's method
