"""File-system helpers shared by the file session store and the disk blob store.

Everything here is blocking; callers run it off the event loop.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from ._codec import loads, loads_lines

log = logging.getLogger(__name__)
_READ_SIZE = 64 * 1024


def write_atomic(path: Path, data: bytes) -> None:
    """Write a whole file so a crash leaves either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # The data is on disk before the rename, so the name points at a whole file either
        # way. The directory is not fsynced: after a power cut the old version may be back,
        # which the contract allows ("old or new state"), and it saves a flush per write.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_small(path: Path | str) -> bytes:
    """A whole (small) file: open, one read, close. Each system call here releases and
    retakes the GIL, a costly hand-over when the event loop is busy, so there is no fstat: a
    64 KiB read covers every session file but a long log, which reads on to the end. A read
    shorter than asked is taken as the end of the file, as POSIX promises for regular files
    on local file systems (the README's HERA_DATA_DIR row asks for one)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:
            chunks = [data]
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[Any]:
    """Every whole line of a JSONL file. A line that does not parse is a fragment a crash
    left in the middle of an append (`append_line` starts the next record on a new line):
    it is skipped, and only it."""
    try:
        raw = read_small(path)
    except FileNotFoundError:
        return []
    whole = loads_lines(raw)
    if whole is not None and all(isinstance(e, dict) for e in whole):
        return whole  # the common case: every line whole, parsed in one go
    entries: list[Any] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append(loads(line))
        except ValueError:
            log.warning("skipping unreadable line %d of %s", number, path.name)
    return entries


def append_line(path: Path, line: bytes, *, sync: bool = True) -> None:
    """Append one record (`line`, ending in a newline) in a single write.

    A crash in the middle of an earlier append can leave a fragment without its newline;
    gluing this record onto it would make both unreadable, so the write then starts with a
    newline of its own. A short write (a full disk) is cut back off, so no partial record
    can ever read as a whole one. The caller serialises appenders of one file."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            os.ftruncate(fd, size)
            raise OSError(f"short write to {path.name} ({written} of {len(line)} bytes)")
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
