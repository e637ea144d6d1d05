"""`hera migrate` closes every store it opened, also when a later one fails to open: the
source people store is closed when the target people store cannot be built (the run is
reported as aborted, exit code 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import app.cli
from app.cli import EXIT_FAILED, main
from app.settings import Settings


class Source:
    """A source people store that only records being closed."""

    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def test_the_source_people_store_is_closed_when_the_target_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in Settings.model_fields:  # nothing of the runner or a `.env` leaks in
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERA_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "people").mkdir()
    source = Source()

    async def source_users(*_: Any) -> Source:
        return source

    async def unbuildable(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the target store is down")

    monkeypatch.setattr(app.cli, "_source_users", source_users)
    monkeypatch.setattr(app.cli, "build_user_repository", unbuildable)

    code = main(["migrate", "--from-users-dir", str(tmp_path / "people")])

    assert code == EXIT_FAILED
    assert "aborted" in capsys.readouterr().out
    assert source.closed == 1
