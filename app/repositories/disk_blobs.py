"""Blobs as files: `<root>/objects/<key>` plus a JSON sidecar `<root>/meta/<key>.json`."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ._blobs import CHUNK_SIZE, ChunkReader, KeySpace, as_chunks, found
from ._codec import dumps, loads
from ._files import write_atomic
from .base import BlobInfo, BlobNotFound, BlobReader, InvalidId, StoreUnavailable

T = TypeVar("T")


@contextlib.contextmanager
def _key_lock(meta: Path, *, exclusive: bool, create_dirs: bool = True) -> Iterator[None]:
    """A per-key flock beside the sidecar (cross-process; never listed as a blob)."""
    if exclusive and create_dirs:
        meta.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(meta.with_name(f".{meta.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


class DiskBlobRepository:
    name = "disk"

    def __init__(self, *, root: Path, key_prefix: str = "") -> None:
        self._root = root.resolve()
        self._objects = self._root / "objects"
        self._meta = self._root / "meta"
        self._keys = KeySpace(key_prefix)
        self._objects.mkdir(parents=True, exist_ok=True)
        self._meta.mkdir(parents=True, exist_ok=True)

    def _paths(self, key: str) -> tuple[Path, Path]:
        full = self._keys.full(key)
        obj, meta = self._objects / full, self._meta / f"{full}.json"
        # Keys are checked segment by segment already; this guards against any slip. A pure
        # string check: resolve() would be file-system I/O on the event loop.
        if not os.path.normpath(obj).startswith(f"{self._objects}{os.sep}"):
            raise InvalidId("blob key escapes the store")
        return obj, meta

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobNotFound(str(args[0]) if args else "") from exc
        except OSError as exc:
            raise StoreUnavailable("blobs", type(exc).__name__) from exc

    async def put(
        self, *, key: str, data: bytes | AsyncIterable[bytes], content_type: str
    ) -> BlobInfo:
        obj, meta = self._paths(key)
        await anyio.to_thread.run_sync(lambda: obj.parent.mkdir(parents=True, exist_ok=True))
        tmp = obj.with_name(f".{obj.name}.{uuid.uuid4().hex}.part")
        digest, size = hashlib.md5(usedforsecurity=False), 0
        try:
            async with await anyio.open_file(tmp, "wb") as out:
                async for chunk in as_chunks(data):
                    digest.update(chunk)
                    size += len(chunk)
                    await out.write(chunk)
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        info = BlobInfo(key, size, content_type, digest.hexdigest(), datetime.now(UTC))

        def _commit() -> None:
            meta.parent.mkdir(parents=True, exist_ok=True)
            record = {"content_type": content_type, "etag": info.etag, "size": size}
            # Object and sidecar change together: readers take the same lock shared.
            with _key_lock(meta, exclusive=True):
                os.replace(tmp, obj)
                write_atomic(meta, dumps(record).encode())

        await self._run(_commit)
        return info

    def _open_locked(self, key: str) -> tuple[BlobInfo, int]:
        """The object's fd and the metadata that belongs to exactly that content."""
        obj, meta = self._paths(key)
        with _key_lock(meta, exclusive=False):
            fd = os.open(obj, os.O_RDONLY)
            try:
                st = os.fstat(fd)
                try:
                    record = loads(meta.read_bytes())
                except FileNotFoundError:
                    etag = f"{st.st_size}-{st.st_mtime_ns}"
                    record = {"content_type": "application/octet-stream", "etag": etag}
            except BaseException:
                os.close(fd)
                raise
        info = BlobInfo(
            key, st.st_size, record["content_type"], record["etag"],
            datetime.fromtimestamp(st.st_mtime, UTC),
        )  # fmt: skip
        return info, fd

    def _stat(self, key: str) -> BlobInfo:
        info, fd = self._open_locked(key)
        os.close(fd)
        return info

    async def stat(self, *, key: str) -> BlobInfo:
        return await self._run(self._stat, key)

    async def exists(self, *, key: str) -> bool:
        return await found(self.stat(key=key))

    async def open(self, *, key: str) -> BlobReader:
        info, fd = await self._run(self._open_locked, key)
        handle = anyio.wrap_file(os.fdopen(fd, "rb"))

        async def _stream() -> AsyncIterator[bytes]:
            while chunk := await handle.read(CHUNK_SIZE):
                yield chunk

        return ChunkReader(info, _stream(), handle.aclose)

    async def delete(self, *, key: str) -> bool:
        obj, meta = self._paths(key)

        def _delete() -> bool:
            try:
                with _key_lock(meta, exclusive=True, create_dirs=False):
                    meta.unlink(missing_ok=True)
                    obj.unlink()
            except FileNotFoundError:
                return False
            return True

        return await self._run(_delete)

    async def delete_prefix(self, *, prefix: str) -> int:
        keys = [info.key async for info in self.list(prefix=prefix)]
        for key in keys:
            await self.delete(key=key)
        full = self._keys.full_prefix(prefix)

        def _prune() -> None:
            for root in (self._objects, self._meta):
                shutil.rmtree(root / full, ignore_errors=True)

        await anyio.to_thread.run_sync(_prune)
        return len(keys)

    async def list(self, *, prefix: str) -> AsyncIterator[BlobInfo]:
        base = self._objects / self._keys.full_prefix(prefix)

        def _walk() -> list[str]:
            found: list[str] = []
            for folder, _dirs, files in os.walk(base):
                for name in files:
                    if not name.startswith("."):
                        rel = Path(folder, name).relative_to(self._objects).as_posix()
                        found.append(self._keys.relative(rel))
            return sorted(found)

        for key in await anyio.to_thread.run_sync(_walk):
            try:
                yield await self.stat(key=key)
            except BlobNotFound:
                continue

    async def presigned_url(self, *, key: str, expires_in: int) -> str | None:
        self._paths(key)
        return None

    async def ping(self) -> None:
        if not await anyio.to_thread.run_sync(os.access, self._objects, os.W_OK):
            raise StoreUnavailable("blobs", "blob directory is not writable")

    async def aclose(self) -> None:
        return None
