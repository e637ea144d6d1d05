"""Static checks of the container and compose files (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = sorted((ROOT / "deploy").glob("docker-compose*.yml"))
_SUBST = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?-(?P<default>[^}]*))?\}")
# What Settings reads, and what uvicorn itself reads from the environment.
KNOWN = {name.upper() for name in Settings.model_fields} | {"FORWARDED_ALLOW_IPS"}


def _resolve(value: Any) -> str:
    # Compose substitutes ${VAR:-default}; with nothing set the default is what runs.
    return _SUBST.sub(lambda m: m["default"] or "", str(value))


def app_services(path: Path) -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load(path.read_text())
    return {
        name: service
        for name, service in spec["services"].items()
        if service.get("build") or str(service.get("image", "")).startswith("hera-api")
    }


def test_every_deployment_has_a_compose_file() -> None:
    names = {p.name for p in COMPOSE_FILES}
    assert {
        "docker-compose.yml",
        "docker-compose.redis.yml",
        "docker-compose.production.yml",
        "docker-compose.gcs.yml",
    } <= names


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_sets_only_variables_the_settings_know(path: Path) -> None:
    services = app_services(path)
    assert services, f"{path.name} runs no Hera API service"
    for name, service in services.items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{path.name}:{name}: use the mapping form for environment"
        unknown = sorted(set(env) - KNOWN)
        assert not unknown, f"{path.name}:{name}: unknown variables {unknown}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_values_validate(
    path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in KNOWN:
        monkeypatch.delenv(name, raising=False)
    for service in app_services(path).values():
        for key, value in (service.get("environment") or {}).items():
            if _resolve(value) != "":
                monkeypatch.setenv(key, _resolve(value))
        try:
            load_settings()
        except SettingsError as exc:
            pytest.fail(f"{path.name}: {exc}")


def test_production_compose_is_redis_plus_s3_with_two_replicas() -> None:
    api = app_services(ROOT / "deploy" / "docker-compose.production.yml")["api"]
    assert api["deploy"]["replicas"] == 2
    env = {k: _resolve(v) for k, v in api["environment"].items()}
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if v})  # type: ignore[arg-type]
    assert (settings.resolved_session_type, settings.resolved_blob_type) == ("redis", "s3")


def test_dockerfile_runs_uvicorn_as_non_root_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "HEALTHCHECK" in text and "/api/health" in text
    assert "uvicorn app.main:app" in text and "${PORT}" in text and "--proxy-headers" in text
    assert "VOLUME" in text


def test_the_production_env_example_names_exactly_what_compose_substitutes() -> None:
    compose = (ROOT / "deploy" / "docker-compose.production.yml").read_text()
    # `$${X}` is compose's escape for a literal `${X}` (expanded by the container's shell).
    substituted = {m["name"] for m in re.finditer(r"(?<!\$)\$\{(?P<name>[A-Z0-9_]+)", compose)}
    example = (ROOT / "deploy" / ".env.production.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in example if line and not line.startswith("#")}
    assert names == substituted


def _nginx_locations(text: str) -> dict[str, str]:
    """`location <pattern> { ... }` blocks of nginx.conf: pattern -> body (no nesting)."""
    return {
        m["pattern"].strip(): m["body"]
        for m in re.finditer(r"location\s+(?P<pattern>[^{]+)\{(?P<body>[^}]*)\}", text)
    }


def test_nginx_passes_streamed_chat_replies_unbuffered() -> None:
    locations = _nginx_locations((ROOT / "deploy" / "nginx.conf").read_text())
    streamed = [p for p in locations if p.startswith("~")]
    assert len(streamed) == 1, locations
    pattern = re.compile(streamed[0].removeprefix("~").strip())
    sid = "0b6f1a52-3c1e-4b5e-9d3a-8f2e4c6a7b10"
    for path in (f"/api/sessions/{sid}/messages", f"/api/sessions/{sid}/family/messages"):
        assert pattern.search(path), path
    for path in (f"/api/sessions/{sid}/status", f"/api/sessions/{sid}/photos/user", "/"):
        assert not pattern.search(path), path
    body = locations[streamed[0]]
    assert re.search(r"^\s*proxy_buffering off;", body, re.M), body
    assert "proxy_buffering" not in locations["/"]  # everything else keeps nginx's buffering
    for directive in ("proxy_pass http://hera_api;", "proxy_http_version 1.1;"):
        assert directive in body


def test_nginx_never_serves_the_metrics_from_outside() -> None:
    locations = _nginx_locations((ROOT / "deploy" / "nginx.conf").read_text())
    assert "return 404;" in locations["= /metrics"]
