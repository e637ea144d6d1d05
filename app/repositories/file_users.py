"""People as files: `<root>/<owner key>/record.json` and `index-<name>.json`.

Every change holds the person's flock (`.lock`) while it reads, changes and atomically
replaces one file (temp file + fsync + rename), so concurrent changes from any process all
land and a crash leaves the old or the new file, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ._checks import check_fields
from ._codec import dumps, loads, merge_fields
from ._files import read_small, write_atomic
from .base import JSONDict, StoreUnavailable, utcnow
from .users import (
    MAX_TAGS,
    IndexName,
    Page,
    TooManyTags,
    check_index,
    check_owner_key,
    check_record_fields,
    is_owner_key,
    page_of,
)

T = TypeVar("T")


class FileUserRepository:
    def __init__(self, *, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)

    def _dir(self, owner_key: str) -> Path:
        return self._root / check_owner_key(owner_key)  # 32 hex: never leaves the root

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except OSError as exc:
            raise StoreUnavailable("users", type(exc).__name__) from exc

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return loads(read_small(path))
        except FileNotFoundError:
            return None

    def _change_record(
        self, owner_key: str, change: Callable[[JSONDict], JSONDict], *, create: bool = True
    ) -> JSONDict:
        folder = self._dir(owner_key)
        if not create and not (folder / "record.json").exists():
            return {"tags": []}  # nothing to change: leave no trace of the person
        with self._locked(folder):
            now = utcnow().isoformat()
            record = self._read(folder / "record.json") or {
                "tags": [], "created_at": now, "updated_at": now,
            }  # fmt: skip
            changed = change(record)
            if changed != record:
                changed["updated_at"] = now
                write_atomic(folder / "record.json", dumps(changed).encode())
            return changed

    async def get(self, *, owner_key: str) -> JSONDict | None:
        found: JSONDict | None = await self._run(self._read, self._dir(owner_key) / "record.json")
        return found

    async def update(self, *, owner_key: str, fields: Mapping[str, Any]) -> JSONDict:
        payload = dict(check_record_fields(fields))

        def change(record: JSONDict) -> JSONDict:
            merged = merge_fields(record, payload)
            merged["updated_at"] = utcnow().isoformat()  # an update always counts as one
            return merged

        return await self._run(self._change_record, owner_key, change)

    async def restore(self, *, owner_key: str, record: Mapping[str, Any]) -> bool:
        folder = self._dir(owner_key)
        data = dumps({"tags": [], **check_fields(record)}).encode()

        def _restore() -> bool:
            with self._locked(folder):
                if (folder / "record.json").exists():
                    return False
                write_atomic(folder / "record.json", data)
                return True

        return await self._run(_restore)

    async def add_tag(self, *, owner_key: str, tag: str) -> list[str]:
        def change(record: JSONDict) -> JSONDict:
            if tag in record["tags"]:
                return record
            if len(record["tags"]) >= MAX_TAGS:
                raise TooManyTags(owner_key)
            return {**record, "tags": [*record["tags"], tag]}

        return list((await self._run(self._change_record, owner_key, change))["tags"])

    async def remove_tag(self, *, owner_key: str, tag: str) -> list[str]:
        def change(record: JSONDict) -> JSONDict:
            return {**record, "tags": [t for t in record["tags"] if t != tag]}

        changed = await self._run(partial(self._change_record, owner_key, change, create=False))
        return list(changed["tags"])

    def _change_index(
        self, owner_key: str, index: str, change: Callable[[dict[str, float]], bool]
    ) -> bool:
        folder = self._dir(owner_key)
        path = folder / f"index-{check_index(index)}.json"
        if not folder.exists() and not change({}):
            return False  # nothing to change: leave no trace of the person
        with self._locked(folder):
            entries: dict[str, float] = self._read(path) or {}
            changed = change(entries)
            if changed and entries:
                write_atomic(path, dumps(entries).encode())
            elif changed:
                path.unlink()  # an empty index is no index: the person may have nothing left
            return changed

    async def index_add(
        self, *, owner_key: str, index: IndexName, item_id: str, at: datetime
    ) -> None:
        def add(entries: dict[str, float]) -> bool:
            if item_id in entries:
                return False  # listed already: its time stays the first one
            entries[item_id] = at.timestamp()
            return True

        await self._run(self._change_index, owner_key, index, add)

    async def index_remove(self, *, owner_key: str, index: IndexName, item_id: str) -> bool:
        def remove(entries: dict[str, float]) -> bool:
            return entries.pop(item_id, None) is not None

        return await self._run(self._change_index, owner_key, index, remove)

    async def index_page(
        self, *, owner_key: str, index: IndexName, limit: int, cursor: str | None = None
    ) -> Page:
        path = self._dir(owner_key) / f"index-{check_index(index)}.json"
        entries: dict[str, float] = await self._run(self._read, path) or {}
        return page_of(entries, limit, cursor)

    async def delete(self, *, owner_key: str) -> bool:
        folder = self._dir(owner_key)

        def _delete() -> bool:
            trash = self._root / f".trash-{folder.name}-{uuid.uuid4().hex}"
            try:
                folder.rename(trash)  # the person vanishes in one step
            except FileNotFoundError:
                return False
            found = self._holds_anything(trash)
            shutil.rmtree(trash, ignore_errors=True)
            return found

        return await self._run(_delete)

    @staticmethod
    def _holds_anything(folder: Path) -> bool:
        """A record or an index: a folder with only its `.lock` (or a crashed write's
        temp file) holds no person."""
        try:
            return any(not name.startswith(".") for name in os.listdir(folder))
        except FileNotFoundError:
            return False

    async def iter_owners(self) -> AsyncIterator[str]:
        def owners() -> list[str]:
            names = sorted(os.listdir(self._root))
            return [n for n in names if is_owner_key(n) and self._holds_anything(self._root / n)]

        for name in await self._run(owners):
            yield name

    async def durability(self) -> str:
        return "disk"

    async def ping(self) -> None:
        def _ping() -> None:
            if not os.access(self._root, os.W_OK):
                raise StoreUnavailable("users", "data directory is not writable")

        await self._run(_ping)

    async def aclose(self) -> None:
        return None
