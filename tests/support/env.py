"""Settings from a controlled environment: the settings tests set variables and read back
what `load_settings` makes of them (or the problems it refuses them with)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings


def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the test runner and no `.env` of the checkout may leak into a case
    (the settings read names case-insensitively, so both spellings go)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def problems_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems, "a SettingsError must carry at least one line"
    return caught.value.problems


def only_line(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def only_problem(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    return only_line(problems_from(monkeypatch, **env))
