"""What only the file adapter does: whole-file reads and one-parse JSONL logs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from app.repositories import file_sessions
from app.repositories._codec import loads_lines
from app.repositories.file_sessions import FileSessionRepository, read_jsonl, read_small
from tests.support.writes import append


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 200_000])
def test_read_small_returns_the_whole_file_at_any_size(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    assert read_small(path) == data


def test_read_small_raises_file_not_found_for_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_small(tmp_path / "missing.json")


def test_a_whole_log_parses_in_one_go_and_keeps_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [{"n": i, "text": "こんにちは" * i} for i in range(50)]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    assert loads_lines(path.read_bytes()) == entries

    def per_line(_: bytes) -> None:
        raise AssertionError("a whole log must not be parsed line by line")

    monkeypatch.setattr(file_sessions, "loads", per_line)
    assert read_jsonl(path) == entries


def test_a_torn_line_is_skipped_and_every_whole_line_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    # A crash mid-append leaves a fragment; a later append starts on the same line.
    path.write_bytes('{"n":1}\n{"n":2,"text":"途\n{"n":3}\n\n{"n":4}\n{"n":5'.encode())
    assert loads_lines(path.read_bytes()) is None  # the one-parse path refuses it...
    assert read_jsonl(path) == [{"n": 1}, {"n": 3}, {"n": 4}]  # ...the line path keeps the rest


def test_an_empty_or_missing_log_is_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert read_jsonl(tmp_path / "empty.jsonl") == []
    assert read_jsonl(tmp_path / "missing.jsonl") == []


async def test_a_log_longer_than_one_read_loads_whole(tmp_path: Path) -> None:
    repo = FileSessionRepository(root=tmp_path)
    sid = (await repo.create()).session_id
    entries = [{"n": i, "message": "週末は家族で海に行きたいです。" * 8} for i in range(600)]
    for start in range(0, len(entries), 50):
        await append(repo, session_id=sid, log="history", entries=entries[start : start + 50])
    assert (tmp_path / sid / "journal.jsonl").stat().st_size > 3 * 64 * 1024
    snap = await repo.load(session_id=sid, docs=["profile"], logs=["history"])
    assert snap.log("history") == entries


async def test_values_written_before_they_were_checked_still_read(tmp_path: Path) -> None:
    """NaN (which json wrote by default) and a byte-order mark from a hand edit, in a
    session of the earlier layout (a file per part): orjson refuses both, the reader falls
    back to json as it read them before."""
    repo = FileSessionRepository(root=tmp_path)
    sid = (await repo.create()).session_id
    meta = json.loads((tmp_path / sid / "meta.json").read_text())
    del meta["layout"]  # written before the journal: its parts live in their own files
    (tmp_path / sid / "meta.json").write_text(json.dumps(meta))
    (tmp_path / sid / "profile.json").write_bytes(b'\xef\xbb\xbf{"score": NaN, "age": 30}')
    (tmp_path / sid / "history.jsonl").write_bytes(b'{"n": 1}\n{"v": Infinity}\n')
    snap = await repo.load(session_id=sid, docs=["profile"], logs=["history"])
    assert snap.doc("profile")["age"] == 30 and math.isnan(snap.doc("profile")["score"])
    assert snap.log("history") == [{"n": 1}, {"v": math.inf}]
