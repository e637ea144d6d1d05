"""The settings of rate limits, session quotas and the model queue: valid values, one clear
line per invalid one, and what RATE_LIMITS=off turns off."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.main import create_app
from app.ratelimit import build_rate_limiter
from app.settings import RATE_LIMIT_KINDS, SettingsError, load_settings
from tests.support.env import clean, only_problem, settings_from

QUOTAS = ("interview_messages", "family_messages", "partner_images", "child_image_rounds")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the test runner and no `.env` of the checkout may leak into a case."""
    clean(monkeypatch, tmp_path)


def test_limits_are_on_by_default_with_the_documented_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch)

    assert settings.rate_limits == "on"
    assert {kind: settings.rate_limit(kind) for kind in RATE_LIMIT_KINDS} == {
        "sessions": "20/minute",
        "turns": "30/minute",
        "images": "10/minute",
        "uploads": "10/minute",
    }
    assert [settings.session_quota(name) for name in QUOTAS] == [100, 100, 10, 10]
    assert settings.llm_max_queue == 200


@pytest.mark.parametrize("value", ["abc", "0/minute", "30/fortnight", "-1/minute", "10/second;x"])
def test_an_invalid_turns_limit_is_one_line_naming_rate_limit_turns(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    line = only_problem(monkeypatch, RATE_LIMIT_TURNS=value)

    assert line.startswith("RATE_LIMIT_TURNS:"), line
    assert repr(value) in line


@pytest.mark.parametrize("kind", RATE_LIMIT_KINDS)
def test_every_rate_limit_variable_is_checked_and_named(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    line = only_problem(monkeypatch, **{f"RATE_LIMIT_{kind.upper()}": "lots"})

    assert line.startswith(f"RATE_LIMIT_{kind.upper()}:"), line


def test_an_invalid_limit_stops_start_up_with_one_configuration_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RATE_LIMIT_TURNS", "0/minute")

    with pytest.raises(SystemExit) as caught:
        create_app()

    assert caught.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("configuration error: RATE_LIMIT_TURNS:"), lines


def test_a_bad_limit_is_reported_together_with_other_bad_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"RATE_LIMIT_UPLOADS": "abc", "LLM_MAX_QUEUE": "-1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()

    named = sorted(problem.split(":")[0] for problem in caught.value.problems)
    assert named == ["LLM_MAX_QUEUE", "RATE_LIMIT_UPLOADS"]


def test_several_windows_and_an_empty_value_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch, RATE_LIMIT_SESSIONS="10/second;500/hour", RATE_LIMIT_TURNS="  "
    )

    assert settings.rate_limit("sessions") == "10/second;500/hour"
    assert settings.rate_limit("turns") == ""
    limiter = build_rate_limiter(settings)
    assert [str(item) for item in limiter.rules["sessions"]] == [
        "10 per 1 second",
        "500 per 1 hour",
    ]
    assert "turns" not in limiter.rules


def test_rate_limits_off_empties_every_limit_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, RATE_LIMITS="OFF", RATE_LIMIT_TURNS="1/hour")

    assert settings.rate_limits == "off"
    assert all(settings.rate_limit(kind) == "" for kind in RATE_LIMIT_KINDS)
    assert all(settings.session_quota(name) is None for name in QUOTAS)


def test_rate_limits_off_builds_no_limiter_and_no_redis_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An unreachable Redis: nothing may try to connect to it.
    settings = settings_from(monkeypatch, RATE_LIMITS="off", REDIS_URL="redis://10.255.255.1:1/0")

    limiter = build_rate_limiter(settings)

    assert limiter.strategy is None and limiter.rules == {} and limiter.client is None


def test_an_unknown_rate_limits_switch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    line = only_problem(monkeypatch, RATE_LIMITS="sometimes")

    assert line.startswith("RATE_LIMITS:"), line
    assert "on" in line and "off" in line


@pytest.mark.parametrize("name", QUOTAS)
def test_a_blank_quota_is_unlimited_and_zero_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    variable = f"SESSION_MAX_{name.upper()}"
    assert settings_from(monkeypatch, **{variable: ""}).session_quota(name) is None
    assert settings_from(monkeypatch, **{variable: "3"}).session_quota(name) == 3

    assert only_problem(monkeypatch, **{variable: "0"}).startswith(f"{variable}:")


def test_the_model_queue_may_be_zero_but_not_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(monkeypatch, LLM_MAX_QUEUE="0").llm_max_queue == 0

    assert only_problem(monkeypatch, LLM_MAX_QUEUE="-1").startswith("LLM_MAX_QUEUE:")
