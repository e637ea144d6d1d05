"""Sign-in configuration: AUTH_MODE and its companions, the Firebase preset, the URL signing
key. Every incomplete combination is refused with one line per problem, naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import (
    FIREBASE_ISSUER,
    FIREBASE_JWKS_URL,
    SettingsError,
    settings_or_exit,
)
from tests.support.env import clean, only_line, problems_from, settings_from

KEY_32 = "k" * 32
KEY_31 = "secret-signing-key-of-31-bytes!"
ISSUER = "https://issuer.example.jp"
AUDIENCE = "hera-web"
JWKS = "https://issuer.example.jp/.well-known/jwks.json"
COMPLETE = {
    "AUTH_ISSUER": ISSUER,
    "AUTH_AUDIENCE": AUDIENCE,
    "AUTH_JWKS_URL": JWKS,
    "URL_SIGNING_KEY": KEY_32,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the test runner and no `.env` of the checkout may leak into a case."""
    clean(monkeypatch, tmp_path)


# ------------------------------------------------------------------ the mode
def test_a_complete_issuer_configuration_turns_optional_sign_in_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch, **COMPLETE)

    assert settings.resolved_auth_mode == "optional"
    assert settings.resolved_auth_issuer == ISSUER
    assert settings.resolved_auth_audience == AUDIENCE
    assert settings.resolved_auth_jwks_url == JWKS
    assert settings.image_url_ttl == 4 * 3600


def test_auth_mode_off_needs_nothing_and_ignores_a_half_configured_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch, AUTH_MODE="off", AUTH_ISSUER=ISSUER)

    assert settings.resolved_auth_mode == "off"


@pytest.mark.parametrize("mode", ["optional", "required", "REQUIRED"])
def test_auth_mode_is_taken_as_given(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    assert settings_from(monkeypatch, AUTH_MODE=mode, **COMPLETE).resolved_auth_mode == mode.lower()


def test_an_unknown_auth_mode_lists_the_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    line = only_line(problems_from(monkeypatch, AUTH_MODE="sometimes", **COMPLETE))

    assert line.startswith("AUTH_MODE")
    for allowed in ("off", "optional", "required"):
        assert allowed in line


# ------------------------------------------------------------------ the URL signing key
def test_optional_sign_in_without_a_url_signing_key_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {k: v for k, v in COMPLETE.items() if k != "URL_SIGNING_KEY"}
    line = only_line(problems_from(monkeypatch, AUTH_MODE="optional", **env))

    assert "URL_SIGNING_KEY" in line
    assert "AUTH_MODE=optional" in line


def test_a_31_byte_signing_key_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert len(KEY_31.encode()) == 31
    with pytest.raises(SettingsError) as caught:
        settings_from(monkeypatch, **{**COMPLETE, "URL_SIGNING_KEY": KEY_31})

    line = only_line(caught.value.problems)
    assert "URL_SIGNING_KEY" in line and "32 bytes" in line
    for text in (line, str(caught.value), repr(caught.value)):
        assert KEY_31 not in text


@pytest.mark.parametrize(
    "key",
    ["k" * 32, "é" * 16, "鍵" * 10 + "ab"],
    ids=["32-ascii", "16-two-byte-chars", "12-chars-32-bytes"],
)
def test_a_signing_key_of_32_bytes_is_enough_however_many_characters(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    assert len(key.encode()) == 32
    settings = settings_from(monkeypatch, **{**COMPLETE, "URL_SIGNING_KEY": key})

    assert settings.url_signing_key is not None
    assert settings.url_signing_key.get_secret_value() == key  # kept whole, not normalised
    assert key not in repr(settings)


# ------------------------------------------------------------------ the issuer's companions
@pytest.mark.parametrize("missing", ["AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"])
def test_an_explicit_mode_without_one_issuer_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    env = {k: v for k, v in COMPLETE.items() if k != missing}
    line = only_line(problems_from(monkeypatch, AUTH_MODE="optional", **env))

    assert missing in line
    assert "FIREBASE_PROJECT_ID" in line  # the other way to provide it


def test_an_issuer_alone_names_every_missing_companion_on_its_own_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = problems_from(monkeypatch, AUTH_ISSUER=ISSUER)

    assert len(problems) == 3, problems
    for name, line in zip(
        ["AUTH_AUDIENCE", "AUTH_JWKS_URL", "URL_SIGNING_KEY"], problems, strict=True
    ):
        assert name in line


def test_a_jwks_url_that_is_not_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    line = only_line(
        problems_from(monkeypatch, **{**COMPLETE, "AUTH_JWKS_URL": "file:///etc/jwks.json"})
    )

    assert "AUTH_JWKS_URL" in line


# ------------------------------------------------------------------ Firebase
def test_a_firebase_project_id_fills_issuer_audience_and_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch, FIREBASE_PROJECT_ID="hera-prod", URL_SIGNING_KEY=KEY_32)

    assert settings.resolved_auth_mode == "optional"
    assert settings.resolved_auth_issuer == f"{FIREBASE_ISSUER}hera-prod"
    assert settings.resolved_auth_issuer == "https://securetoken.google.com/hera-prod"
    assert settings.resolved_auth_audience == "hera-prod"
    assert settings.resolved_auth_jwks_url == FIREBASE_JWKS_URL
    assert settings.resolved_auth_jwks_url.startswith("https://www.googleapis.com/")


def test_a_firebase_project_id_alone_still_needs_the_signing_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = only_line(problems_from(monkeypatch, FIREBASE_PROJECT_ID="hera-prod"))

    assert "URL_SIGNING_KEY" in line


def test_explicit_issuer_settings_win_over_the_firebase_preset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch, FIREBASE_PROJECT_ID="hera-prod", **COMPLETE)

    assert settings.resolved_auth_issuer == ISSUER
    assert settings.resolved_auth_audience == AUDIENCE
    assert settings.resolved_auth_jwks_url == JWKS


def test_a_malformed_firebase_project_id_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = problems_from(monkeypatch, FIREBASE_PROJECT_ID="Hera Prod!", URL_SIGNING_KEY=KEY_32)

    assert any(line.startswith("FIREBASE_PROJECT_ID") for line in problems), problems


# ------------------------------------------------------------------ image URL lifetime
@pytest.mark.parametrize("ttl", ["0", str(7 * 24 * 3600 + 1), "soon"])
def test_an_image_url_ttl_out_of_range_is_named(monkeypatch: pytest.MonkeyPatch, ttl: str) -> None:
    line = only_line(problems_from(monkeypatch, IMAGE_URL_TTL=ttl, **COMPLETE))

    assert line.startswith("IMAGE_URL_TTL")


# ------------------------------------------------------------------ at start-up
def test_a_process_with_incomplete_sign_in_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_MODE", "required")
    monkeypatch.setenv("FIREBASE_PROJECT_ID", "hera-prod")
    monkeypatch.setenv("URL_SIGNING_KEY", KEY_31)

    with pytest.raises(SystemExit) as exited:
        settings_or_exit()

    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("configuration error: AUTH_MODE=required requires URL_SIGNING_KEY")
    assert KEY_31 not in lines[0]
