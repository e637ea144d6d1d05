"""Every configuration rule: defaults, legacy names, and one clear line per problem."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.container import build_blob_repository
from app.settings import SettingsError, load_settings
from tests.support.env import clean, only_line, problems_from, settings_from

GEMINI_SECRET = "gemini-secret-value-0123456789"
AWS_SECRET = "aws-secret-value-abcdefghijklmnop"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the test runner and no `.env` of the checkout may leak into a case."""
    clean(monkeypatch, tmp_path)


# ------------------------------------------------------------------ defaults
def test_defaults_are_file_sessions_disk_blobs_offline_brain_and_proxy_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch)

    assert settings.resolved_session_type == "file"
    assert settings.resolved_blob_type == "disk"
    assert settings.resolved_llm_provider == "offline"
    assert settings.blob_url_mode == "proxy"
    assert settings.port == 8080
    assert settings.session_ttl == 86400
    assert settings.max_upload_bytes == 10485760
    assert settings.max_message_chars == 2000
    assert settings.allowed_origins == ["http://localhost:3000"]  # the frontend's dev server
    assert settings.cors_allow_credentials is False
    assert settings.blob_key_prefix == ""
    assert settings.resolved_auth_mode == "off"  # no issuer configured


def test_default_data_dir_is_dot_data_with_sessions_and_blobs_in_separate_subfolders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch)

    assert settings.hera_data_dir == Path("./data")
    assert settings.resolved_sessions_dir == Path("./data") / "sessions"
    assert settings.blobs_dir == Path("./data") / "blobs"
    assert settings.resolved_sessions_dir != settings.blobs_dir


# ------------------------------------------------------------------ session store choice
def test_redis_url_alone_selects_redis_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, REDIS_URL="redis://redis:6379/0")

    assert settings.resolved_session_type == "redis"
    assert settings.redis_url == "redis://redis:6379/0"


def test_session_type_file_wins_over_a_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, SESSION_TYPE="file", REDIS_URL="redis://redis:6379/0")

    assert settings.resolved_session_type == "file"


def test_session_type_redis_without_redis_url_is_refused_with_the_exact_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = problems_from(monkeypatch, SESSION_TYPE="redis")

    assert problems == ["SESSION_TYPE=redis requires REDIS_URL"]


def test_blank_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose files often carry `REDIS_URL=`; that must not select (or break) anything
    settings = settings_from(monkeypatch, SESSION_TYPE="", REDIS_URL="  ")

    assert settings.resolved_session_type == "file"
    assert problems_from(monkeypatch, SESSION_TYPE="redis") == [
        "SESSION_TYPE=redis requires REDIS_URL"
    ]


def test_redis_url_with_a_foreign_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    line = only_line(problems_from(monkeypatch, REDIS_URL="http://redis:6379/0"))

    assert "REDIS_URL" in line


# ------------------------------------------------------------------ unknown choices
@pytest.mark.parametrize(
    ("variable", "allowed"),
    [
        ("SESSION_TYPE", ["file", "redis"]),
        ("STORAGE_MODE", ["local", "cloud"]),
        ("CLOUD_STORAGE_TYPE", ["s3", "gcs"]),
        ("BLOB_URL_MODE", ["proxy", "presigned"]),
        ("LLM_PROVIDER", ["offline", "gemini"]),
        ("LOG_FORMAT", ["text", "json"]),
    ],
)
def test_an_unknown_choice_names_the_variable_and_lists_the_allowed_values(
    monkeypatch: pytest.MonkeyPatch, variable: str, allowed: list[str]
) -> None:
    line = only_line(problems_from(monkeypatch, **{variable: "bogus"}))

    assert line.startswith(variable), line
    assert "bogus" in line
    for value in allowed:
        assert value in line, f"{value!r} missing from {line!r}"


def test_choices_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch,
        SESSION_TYPE="REDIS",
        REDIS_URL="redis://redis:6379/0",
        STORAGE_MODE="Cloud",
        CLOUD_STORAGE_TYPE="S3",
        S3_BUCKET_NAME="hera",
        BLOB_URL_MODE="Presigned",
        LLM_PROVIDER="OFFLINE",
        LOG_FORMAT="JSON",
        LOG_LEVEL="debug",
    )

    assert settings.resolved_session_type == "redis"
    assert settings.resolved_blob_type == "s3"
    assert settings.blob_url_mode == "presigned"
    assert settings.resolved_llm_provider == "offline"
    assert settings.log_format == "json"
    assert settings.log_level == "DEBUG"


# ------------------------------------------------------------------ blob store choice
@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"STORAGE_MODE": "cloud"}, "CLOUD_STORAGE_TYPE"),
        ({"STORAGE_MODE": "cloud", "CLOUD_STORAGE_TYPE": "s3"}, "S3_BUCKET_NAME"),
        ({"STORAGE_MODE": "cloud", "CLOUD_STORAGE_TYPE": "gcs"}, "GCS_BUCKET_NAME"),
    ],
    ids=["cloud-without-type", "s3-without-bucket", "gcs-without-bucket"],
)
def test_cloud_storage_without_its_required_variable_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    line = only_line(problems_from(monkeypatch, **env))

    assert variable in line, line


def test_cloud_storage_without_type_lists_the_allowed_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = only_line(problems_from(monkeypatch, STORAGE_MODE="cloud"))

    assert "s3" in line
    assert "gcs" in line


def test_gcs_with_a_bucket_selects_gcs_blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch,
        STORAGE_MODE="cloud",
        CLOUD_STORAGE_TYPE="gcs",
        GCS_BUCKET_NAME="hera",
        STORAGE_EMULATOR_HOST="http://localhost:9023",
    )

    assert settings.resolved_blob_type == "gcs"
    assert settings.storage_emulator_host == "http://localhost:9023"


def test_the_old_production_environment_comes_up_as_redis_sessions_and_s3_blobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(
        monkeypatch,
        STORAGE_MODE="cloud",
        CLOUD_STORAGE_TYPE="s3",
        REDIS_URL="redis://redis:6379/0",
        S3_BUCKET_NAME="hera-prod",
        AWS_REGION="ap-northeast-1",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
    )

    assert settings.session_type is None
    assert settings.resolved_session_type == "redis"
    assert settings.resolved_blob_type == "s3"
    assert settings.s3_bucket_name == "hera-prod"
    assert settings.aws_region == "ap-northeast-1"
    assert settings.aws_access_key_id == "AKIAEXAMPLE"
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == AWS_SECRET


# ------------------------------------------------------------------ several problems
def test_several_invalid_values_are_reported_as_several_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = problems_from(
        monkeypatch, SESSION_TYPE="bogus", STORAGE_MODE="bogus", SESSION_TTL="abc"
    )

    assert len(problems) == 3, problems
    for variable in ("SESSION_TYPE", "STORAGE_MODE", "SESSION_TTL"):
        assert sum(variable in line for line in problems) == 1, (variable, problems)


def test_several_missing_companions_are_reported_as_several_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = problems_from(
        monkeypatch, SESSION_TYPE="redis", STORAGE_MODE="cloud", LLM_PROVIDER="gemini"
    )

    assert len(problems) == 3, problems
    assert "SESSION_TYPE=redis requires REDIS_URL" in problems
    assert any("CLOUD_STORAGE_TYPE" in line for line in problems)
    assert any("GEMINI_API_KEY" in line for line in problems)


def test_an_invalid_value_does_not_hide_a_missing_companion_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = problems_from(monkeypatch, SESSION_TYPE="redis", STORAGE_MODE="bogus")

    assert "SESSION_TYPE=redis requires REDIS_URL" in problems
    assert any(line.startswith("STORAGE_MODE") for line in problems)
    assert len(problems) == 2, problems


# ------------------------------------------------------------------ HTTP
def test_allowed_origins_are_split_on_commas_and_trimmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch, ALLOWED_ORIGINS="https://a.example, https://b.example ,")

    assert settings.allowed_origins == ["https://a.example", "https://b.example"]


def test_wildcard_origin_with_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    line = only_line(problems_from(monkeypatch, ALLOWED_ORIGINS="*", CORS_ALLOW_CREDENTIALS="true"))

    assert "ALLOWED_ORIGINS" in line
    assert "CORS_ALLOW_CREDENTIALS" in line


def test_wildcard_origin_without_credentials_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, ALLOWED_ORIGINS="*")

    assert settings.allowed_origins == ["*"]
    assert settings.cors_allow_credentials is False


# ------------------------------------------------------------------ brains
def test_a_gemini_api_key_selects_the_gemini_brain(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, GEMINI_API_KEY=GEMINI_SECRET)

    assert settings.resolved_llm_provider == "gemini"
    assert settings.gemini_model  # a current Flash model by default
    assert settings.gemini_image_model


def test_llm_provider_offline_overrides_a_gemini_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, GEMINI_API_KEY=GEMINI_SECRET, LLM_PROVIDER="offline")

    assert settings.resolved_llm_provider == "offline"


def test_llm_provider_gemini_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    line = only_line(problems_from(monkeypatch, LLM_PROVIDER="gemini"))

    assert "LLM_PROVIDER" in line
    assert "GEMINI_API_KEY" in line


# ------------------------------------------------------------------ directories
def test_sessions_dir_overrides_the_sessions_folder_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from(monkeypatch, SESSIONS_DIR=str(tmp_path / "legacy-sessions"))

    assert settings.resolved_sessions_dir == tmp_path / "legacy-sessions"
    assert settings.blobs_dir == Path("./data") / "blobs"


def test_hera_data_dir_moves_both_subfolders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from(monkeypatch, HERA_DATA_DIR=str(tmp_path / "hera"))

    assert settings.resolved_sessions_dir == tmp_path / "hera" / "sessions"
    assert settings.blobs_dir == tmp_path / "hera" / "blobs"


# ------------------------------------------------------------------ numbers and formats
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_TTL", "abc"),
        ("SESSION_TTL", "-5"),
        ("SESSION_TTL", "0"),
        ("PORT", "70000"),
        ("PORT", "0"),
        ("MAX_UPLOAD_BYTES", "0"),
        ("MAX_MESSAGE_CHARS", "-1"),
        ("LLM_TIMEOUT_SECONDS", "soon"),
        ("LLM_MAX_RETRIES", "11"),
        ("PRESIGNED_URL_TTL", "604801"),
        ("LOCK_WAIT_SECONDS", "-1"),
        ("REDIS_NAMESPACE", "has space"),
        ("CORS_ALLOW_CREDENTIALS", "maybe"),
        ("LOG_LEVEL", "verbose"),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    line = only_line(problems_from(monkeypatch, **{variable: value}))

    assert line.startswith(variable), line
    assert value.lower() in line.lower(), line  # LOG_LEVEL echoes the upper-cased value


def test_storage_emulator_host_without_a_scheme_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = only_line(problems_from(monkeypatch, STORAGE_EMULATOR_HOST="localhost:9023"))

    assert "STORAGE_EMULATOR_HOST" in line


@pytest.mark.parametrize("prefix", ["../escape", "tenant/../other", "a/./b", "a//b"])
def test_blob_key_prefix_with_dot_or_empty_segments_is_refused(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    line = only_line(problems_from(monkeypatch, BLOB_KEY_PREFIX=prefix))

    assert "BLOB_KEY_PREFIX" in line


async def test_a_clean_blob_key_prefix_with_stray_slashes_still_prefixes_every_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HERA_DATA_DIR", str(tmp_path))
    settings = settings_from(monkeypatch, BLOB_KEY_PREFIX="/tenant-a/prod/")
    blobs = await build_blob_repository(settings)
    try:
        await blobs.put(key="sessions/x/user.png", data=b"png", content_type="image/png")
    finally:
        await blobs.aclose()
    where = tmp_path / "blobs/objects/tenant-a/prod/sessions/x/user.png"
    assert await asyncio.to_thread(where.read_bytes) == b"png"


# ------------------------------------------------------------------ secrets
def test_secrets_never_appear_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch, GEMINI_API_KEY=GEMINI_SECRET, AWS_SECRET_ACCESS_KEY=AWS_SECRET
    )

    for text in (repr(settings), str(settings)):
        assert GEMINI_SECRET not in text
        assert AWS_SECRET not in text


@pytest.mark.parametrize(
    "broken",
    [
        {"SESSION_TTL": "abc", "STORAGE_MODE": "bogus"},  # field errors
        {"SESSION_TYPE": "redis", "STORAGE_MODE": "cloud", "CLOUD_STORAGE_TYPE": "s3"},  # cross
        {"LLM_PROVIDER": "bogus", "CORS_ALLOW_CREDENTIALS": "maybe"},
    ],
    ids=["field-errors", "cross-checks", "brain-errors"],
)
def test_secrets_never_appear_in_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, broken: dict[str, str]
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    for name, value in broken.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    texts = [str(caught.value), repr(caught.value), *caught.value.problems]
    for text in texts:
        assert GEMINI_SECRET not in text
        assert AWS_SECRET not in text


# ------------------------------------------------------------------ .env
def test_a_dot_env_file_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "REDIS_URL=redis://from-dotenv:6379/1\nSTORAGE_MODE=cloud\n"
        "CLOUD_STORAGE_TYPE=gcs\nGCS_BUCKET_NAME=from-dotenv\nMAX_MESSAGE_CHARS=500\n",
        encoding="utf-8",
    )

    settings = settings_from(monkeypatch)

    assert settings.resolved_session_type == "redis"
    assert settings.redis_url == "redis://from-dotenv:6379/1"
    assert settings.resolved_blob_type == "gcs"
    assert settings.gcs_bucket_name == "from-dotenv"
    assert settings.max_message_chars == 500


def test_the_environment_wins_over_the_dot_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("MAX_MESSAGE_CHARS=500\n", encoding="utf-8")

    settings = settings_from(monkeypatch, MAX_MESSAGE_CHARS="700")

    assert settings.max_message_chars == 700


def test_an_invalid_value_in_the_dot_env_file_is_reported_like_any_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("SESSION_TYPE=redis\n", encoding="utf-8")

    assert problems_from(monkeypatch) == ["SESSION_TYPE=redis requires REDIS_URL"]


def test_a_metrics_directory_named_only_in_the_dot_env_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # prometheus-client reads the process environment only: it would not be multiprocess.
    (tmp_path / ".env").write_text(
        f"METRICS_ENABLED=true\nPROMETHEUS_MULTIPROC_DIR={tmp_path / 'prom'}\n", encoding="utf-8"
    )

    line = only_line(problems_from(monkeypatch))

    assert line.startswith("PROMETHEUS_MULTIPROC_DIR"), line
    assert "environment" in line, line


def test_a_metrics_directory_only_in_dot_env_is_reported_with_the_other_problems(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "SESSION_TYPE=redis\nMAX_MESSAGE_CHARS=lots\nPROMETHEUS_MULTIPROC_DIR=/tmp/prom\n",
        encoding="utf-8",
    )

    problems = problems_from(monkeypatch)

    assert [p.split(":")[0].split("=")[0].split(" ")[0] for p in problems] == [
        "MAX_MESSAGE_CHARS",
        "SESSION_TYPE",
        "PROMETHEUS_MULTIPROC_DIR",
    ], problems


@pytest.mark.parametrize("name", ["PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"])
def test_a_metrics_directory_in_the_process_environment_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    (tmp_path / ".env").write_text("PROMETHEUS_MULTIPROC_DIR=/from/dotenv\n", encoding="utf-8")

    settings = settings_from(monkeypatch, METRICS_ENABLED="true", **{name: str(tmp_path)})

    assert settings.prometheus_multiproc_dir == tmp_path


def test_a_blob_key_prefix_with_unsafe_characters_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import SettingsError, load_settings

    monkeypatch.setenv("BLOB_KEY_PREFIX", "my prefix")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith("BLOB_KEY_PREFIX")
