"""The one settings object. Only this module reads the environment.

Variable names are the field names in upper case (no prefix), so the old deployment's
names (SESSION_TYPE, REDIS_URL, STORAGE_MODE, ...) keep their meaning.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, NoDecode, SettingsConfigDict

DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
# The same rule as blob key segments (app/repositories/base.py), checked here at start-up.
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DEFAULT_GEMINI_IMAGE_MODEL = "gemini-2.5-flash-image"
RATE_LIMIT_KINDS = ("sessions", "turns", "images", "uploads")
FIREBASE_ISSUER = "https://securetoken.google.com/"
FIREBASE_JWKS_URL = (
    "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
)


class SettingsError(Exception):
    """Invalid configuration: one human line per problem, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # sessions
    session_type: Literal["file", "redis"] | None = None
    redis_url: str | None = None
    # standalone: REDIS_URL is the server; cluster: any node of a Redis Cluster; sentinel:
    # the sentinels name the master (REDIS_URL then gives only the password, db and TLS)
    redis_mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    redis_sentinels: str | None = None  # host:port,host:port
    redis_sentinel_master: str | None = None
    session_ttl: int = Field(86400, gt=0)
    sessions_dir: Path | None = None
    hera_data_dir: Path = Path("./data")
    redis_max_connections: int = Field(50, gt=0)
    redis_namespace: str = Field("hera", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    lock_ttl_seconds: float = Field(30.0, gt=0)
    lock_wait_seconds: float = Field(15.0, ge=0)

    # blobs
    storage_mode: Literal["local", "cloud"] = "local"
    cloud_storage_type: Literal["s3", "gcs"] | None = None
    s3_bucket_name: str | None = None
    s3_endpoint_url: str | None = None
    s3_presign_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    gcs_bucket_name: str | None = None
    storage_emulator_host: str | None = None
    google_application_credentials: str | None = None
    blob_key_prefix: str = ""
    blob_url_mode: Literal["proxy", "presigned"] = "proxy"
    presigned_url_ttl: int = Field(300, gt=0, le=604800)

    # HTTP
    # The frontend's development server, as in the old backend; production sets its origin.
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000"]
    )
    cors_allow_credentials: bool = False
    port: int = Field(8080, ge=1, le=65535)
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_message_chars: int = Field(2000, gt=0)
    max_request_bytes: int = Field(64 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)

    # brains
    llm_provider: Literal["offline", "gemini"] | None = None
    gemini_api_key: SecretStr | None = None
    gemini_model: str = DEFAULT_GEMINI_MODEL
    gemini_image_model: str = DEFAULT_GEMINI_IMAGE_MODEL
    gemini_base_url: str | None = None
    llm_timeout_seconds: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_max_concurrency: int = Field(200, gt=0)
    llm_max_queue: int = Field(200, ge=0)
    # operating: Prometheus metrics at /metrics; traces to an OTLP endpoint (standard OTEL_*)
    metrics_enabled: bool = False
    prometheus_multiproc_dir: Path | None = None  # read by prometheus-client too
    otel_exporter_otlp_endpoint: str | None = None  # read by the OTLP exporter too
    # streamed replies: a keep-alive comment after this many silent seconds
    sse_keepalive_seconds: float = Field(15.0, gt=0, le=300)

    # limits: requests per client (the `limits` notation; empty = no limit) and per session
    rate_limits: Literal["on", "off"] = "on"
    rate_limit_sessions: str = "20/minute"
    rate_limit_turns: str = "30/minute"
    rate_limit_images: str = "10/minute"
    rate_limit_uploads: str = "10/minute"
    session_max_interview_messages: int | None = Field(100, gt=0)
    session_max_family_messages: int | None = Field(100, gt=0)
    session_max_partner_images: int | None = Field(10, gt=0)
    session_max_child_image_rounds: int | None = Field(10, gt=0)

    # accounts: bearer tokens of one issuer (any OIDC issuer, or Firebase by its project id)
    auth_mode: Literal["off", "optional", "required"] | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_jwks_url: str | None = None
    firebase_project_id: str | None = Field(None, pattern=r"^[a-z0-9-]{1,64}$")
    url_signing_key: SecretStr | None = None
    image_url_ttl: int = Field(4 * 3600, gt=0, le=7 * 24 * 3600)

    # logs
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @field_validator(
        "session_max_interview_messages", "session_max_family_messages",
        "session_max_partner_images", "session_max_child_image_rounds", mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_unlimited(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "session_type", "storage_mode", "cloud_storage_type", "blob_url_mode",
        "llm_provider", "log_format", "rate_limits", "auth_mode", mode="before",
    )  # fmt: skip
    @classmethod
    def _lower_choice(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return value or None
        return value

    @field_validator(
        "redis_url", "redis_sentinels", "redis_sentinel_master", "s3_bucket_name",
        "s3_endpoint_url", "gcs_bucket_name", "gemini_base_url", "storage_emulator_host",
        "otel_exporter_otlp_endpoint", "aws_region", "auth_issuer", "auth_audience", "auth_jwks_url",
        "firebase_project_id", mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems: list[str] = []
        if self.session_type == "redis" and not self.redis_url:
            problems.append("SESSION_TYPE=redis requires REDIS_URL")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append("REDIS_URL must start with redis://, rediss:// or unix://")
        problems += self._redis_mode_problems()
        if self.storage_mode == "cloud":
            if self.cloud_storage_type is None:
                problems.append("STORAGE_MODE=cloud requires CLOUD_STORAGE_TYPE (allowed: s3, gcs)")
            elif self.cloud_storage_type == "s3" and not self.s3_bucket_name:
                problems.append("CLOUD_STORAGE_TYPE=s3 requires S3_BUCKET_NAME")
            elif self.cloud_storage_type == "gcs" and not self.gcs_bucket_name:
                problems.append("CLOUD_STORAGE_TYPE=gcs requires GCS_BUCKET_NAME")
        if self.llm_provider == "gemini" and self.gemini_api_key is None:
            problems.append("LLM_PROVIDER=gemini requires GEMINI_API_KEY")
        if "*" in self.allowed_origins and self.cors_allow_credentials:
            problems.append(
                "ALLOWED_ORIGINS=* cannot be combined with CORS_ALLOW_CREDENTIALS=true "
                "(it would let any site make credentialed requests)"
            )
        if self.storage_emulator_host and "://" not in self.storage_emulator_host:
            problems.append("STORAGE_EMULATOR_HOST must include the scheme, e.g. http://host:9023")
        prefix = self.blob_key_prefix.strip("/")
        if prefix and not all(
            _KEY_SEGMENT.match(seg) and ".." not in seg for seg in prefix.split("/")
        ):
            problems.append(
                "BLOB_KEY_PREFIX: each '/'-separated part must be letters, digits, '.', '_' or "
                "'-' (not starting with '.' or '-'), with no empty, '.' or '..' parts"
            )
        problems.extend(self._auth_problems())
        for name in RATE_LIMIT_KINDS:
            value = getattr(self, f"rate_limit_{name}")
            if value.strip():
                try:
                    valid = all(item.amount > 0 for item in parse_many(value))
                except ValueError:
                    valid = False
                if not valid:
                    problems.append(
                        f"RATE_LIMIT_{name.upper()}: invalid value {value!r} "
                        "(e.g. 30/minute or 10/second;100/hour; empty = no limit)"
                    )
        if problems:
            raise SettingsError(problems)
        return self

    def _auth_problems(self) -> list[str]:
        if self.resolved_auth_mode == "off":
            return []
        problems = []
        mode = f"AUTH_MODE={self.resolved_auth_mode}"
        for name, value in (
            ("AUTH_ISSUER", self.resolved_auth_issuer),
            ("AUTH_AUDIENCE", self.resolved_auth_audience),
            ("AUTH_JWKS_URL", self.resolved_auth_jwks_url),
        ):
            if not value:
                problems.append(f"{mode} requires {name} (or FIREBASE_PROJECT_ID)")
        jwks = self.resolved_auth_jwks_url or ""
        if jwks and not jwks.startswith(("https://", "http://")):
            problems.append("AUTH_JWKS_URL must be an http(s) URL")
        key = self.url_signing_key.get_secret_value() if self.url_signing_key else ""
        if len(key.encode()) < 32:
            problems.append(
                f"{mode} requires URL_SIGNING_KEY of at least 32 bytes (it signs image URLs)"
            )
        return problems

    # -- resolved choices -------------------------------------------------------------
    @property
    def resolved_auth_issuer(self) -> str | None:
        if self.auth_issuer or not self.firebase_project_id:
            return self.auth_issuer
        return f"{FIREBASE_ISSUER}{self.firebase_project_id}"

    @property
    def resolved_auth_audience(self) -> str | None:
        return self.auth_audience or self.firebase_project_id

    @property
    def resolved_auth_jwks_url(self) -> str | None:
        if self.auth_jwks_url or not self.firebase_project_id:
            return self.auth_jwks_url
        return FIREBASE_JWKS_URL

    @property
    def resolved_auth_mode(self) -> Literal["off", "optional", "required"]:
        if self.auth_mode is not None:
            return self.auth_mode
        return "optional" if self.resolved_auth_issuer else "off"

    def _redis_mode_problems(self) -> list[str]:
        problems: list[str] = []
        if self.redis_mode == "cluster" and (self.redis_url or "").startswith("unix://"):
            problems.append("REDIS_MODE=cluster needs a redis:// or rediss:// node in REDIS_URL")
        if self.redis_mode == "sentinel":
            if not self.redis_sentinel_master:
                problems.append("REDIS_MODE=sentinel requires REDIS_SENTINEL_MASTER")
            try:
                if not self.sentinel_addresses:
                    problems.append("REDIS_MODE=sentinel requires REDIS_SENTINELS")
            except ValueError as exc:
                problems.append(f"REDIS_SENTINELS: {exc}")
        elif self.redis_sentinels or self.redis_sentinel_master:
            problems.append("REDIS_SENTINELS and REDIS_SENTINEL_MASTER need REDIS_MODE=sentinel")
        return problems

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; ValueError names a bad entry."""
        found: list[tuple[str, int]] = []
        for entry in (self.redis_sentinels or "").split(","):
            if not entry.strip():
                continue
            host, _, port = entry.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{entry.strip()!r} is not host:port")
            found.append((host.strip("[]"), int(port)))
        return found

    @property
    def resolved_session_type(self) -> Literal["file", "redis"]:
        if self.session_type is not None:
            return self.session_type
        return "redis" if self.redis_url else "file"

    @property
    def resolved_blob_type(self) -> Literal["disk", "s3", "gcs"]:
        if self.storage_mode == "cloud" and self.cloud_storage_type is not None:
            return self.cloud_storage_type
        return "disk"

    @property
    def resolved_llm_provider(self) -> Literal["offline", "gemini"]:
        if self.llm_provider is not None:
            return self.llm_provider
        return "gemini" if self.gemini_api_key is not None else "offline"

    @property
    def resolved_sessions_dir(self) -> Path:
        return self.sessions_dir or self.hera_data_dir / "sessions"

    @property
    def users_dir(self) -> Path:
        return self.hera_data_dir / "users"

    @property
    def blobs_dir(self) -> Path:
        return self.hera_data_dir / "blobs"

    def rate_limit(self, kind: str) -> str:
        """The limit string of one kind of request ('' when limits are off)."""
        return "" if self.rate_limits == "off" else getattr(self, f"rate_limit_{kind}").strip()

    def session_quota(self, name: str) -> int | None:
        """A per-session quota (None: unlimited, also when RATE_LIMITS=off)."""
        limit: int | None = getattr(self, f"session_max_{name}")
        return None if self.rate_limits == "off" else limit


def _describe(error: Any) -> str:
    name = "_".join(str(p) for p in error["loc"] if isinstance(p, str)).upper() or "SETTINGS"
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if error["type"] == "literal_error":
        allowed = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{name}: invalid value {value!r} (allowed: {allowed})"
    return f"{name}: {error['msg']} (got {value!r})"


def _process_environment_problems(overrides: dict[str, Any]) -> list[str]:
    """What the settings and the process environment must agree on. prometheus-client
    chooses multiprocess mode from PROMETHEUS_MULTIPROC_DIR (or its lower-case form) in the
    process environment when it is imported, never from .env: a directory named only in
    .env would leave every worker counting alone while /metrics read the directory."""
    if "prometheus_multiproc_dir" in overrides or any(
        name in os.environ for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    ):
        return []
    env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
    if not DotEnvSettingsSource(Settings, env_file=env_file)().get("prometheus_multiproc_dir"):
        return []
    return [
        "PROMETHEUS_MULTIPROC_DIR is set only in .env: prometheus-client reads it from the "
        "process environment, so set it there"
    ]


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (+ .env); raise SettingsError with clear lines."""
    environment = _process_environment_problems(overrides)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        errors = exc.errors()
    except SettingsError as exc:
        raise SettingsError([*exc.problems, *environment]) from None
    else:
        if environment:
            raise SettingsError(environment)
        return settings
    problems = [_describe(err) for err in errors]
    # Pydantic skips the cross-field checks when a field fails; run them again with the
    # failed fields at their defaults, so every problem is reported in one go.
    failed = {str(err["loc"][0]) for err in errors if err["loc"]}
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in Settings.model_fields.items()
        if name in failed
    }
    try:
        Settings(**{**overrides, **defaults})
    except SettingsError as cross:
        problems.extend(cross.problems)
    except ValidationError:
        pass
    raise SettingsError([*problems, *environment]) from None


def report_problems(exc: SettingsError) -> None:
    for problem in exc.problems:
        print(f"configuration error: {problem}", file=sys.stderr)


def settings_or_exit(**overrides: Any) -> Settings:
    """Settings for a process entry point: on error one line per problem, exit code 2."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        report_problems(exc)
        raise SystemExit(2) from None
