"""Build any store adapter from a small JSON-able spec, in this process or a child one."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.repositories.base import BlobRepository, SessionRepository
from app.repositories.users import UserRepository


@dataclass
class StoreSpec:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    cross_process: bool = True  # False for in-process fakes (memory, fakeredis)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StoreSpec:
        return cls(**json.loads(text))


async def build_session_repo(spec: StoreSpec, **options: Any) -> SessionRepository:
    p = spec.params
    if spec.kind == "memory":
        from app.repositories.memory_sessions import MemorySessionRepository

        return MemorySessionRepository(
            ttl_seconds=options.get("ttl_seconds", 86400),
            lock_wait_seconds=options.get("lock_wait_seconds", 5.0),
            **({"clock": options["clock"]} if "clock" in options else {}),
        )
    if spec.kind == "file":
        from app.repositories.file_sessions import FileSessionRepository

        return FileSessionRepository(
            root=Path(p["root"]),
            ttl_seconds=options.get("ttl_seconds", 86400),
            lock_wait_seconds=options.get("lock_wait_seconds", 5.0),
            **({"clock": options["clock"]} if "clock" in options else {}),
        )
    if spec.kind in ("redis", "fakeredis"):
        from tests.support.redis_support import build_redis_session_repo

        return await build_redis_session_repo(spec, **options)
    raise ValueError(f"unknown session store kind {spec.kind}")


async def build_blob_repo(spec: StoreSpec) -> BlobRepository:
    p = spec.params
    if spec.kind == "memory":
        from app.repositories.memory_blobs import MemoryBlobRepository

        return MemoryBlobRepository(key_prefix=p.get("key_prefix", ""))
    if spec.kind == "disk":
        from app.repositories.disk_blobs import DiskBlobRepository

        return DiskBlobRepository(root=Path(p["root"]), key_prefix=p.get("key_prefix", ""))
    if spec.kind == "s3":
        from app.repositories.s3_blobs import open_s3

        return await open_s3(**p)
    if spec.kind == "gcs":
        from app.repositories.gcs_blobs import open_gcs

        return await open_gcs(**p)
    raise ValueError(f"unknown blob store kind {spec.kind}")


def python() -> str:
    return sys.executable


async def build_user_repo(spec: StoreSpec) -> UserRepository:
    """The user store of the same kind and place as a session spec's."""
    p = spec.params
    if spec.kind == "memory":
        from app.repositories.memory_users import MemoryUserRepository

        return MemoryUserRepository()
    if spec.kind == "file":
        from app.repositories.file_users import FileUserRepository

        return FileUserRepository(root=Path(p["root"]).parent / "users")
    if spec.kind in ("redis", "fakeredis"):
        from tests.support.redis_support import build_redis_user_repo

        return build_redis_user_repo(spec)
    raise ValueError(f"unknown user store kind {spec.kind}")
