"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis 4).

The schema is the app's own `/openapi.json`; requests go to the app in-process (ASGI) on the
file session store + disk blobs with the offline brain. Every operation gets a fixed, seeded
budget (schemathesis' examples, coverage and fuzzing phases; positive and negative data).
Path parameters are swapped for real ones in part of the cases (sessions created before the
run: a fresh one and one with a finished interview, a family and a user photo; real image
names), so requests reach the agents and the stores instead of stopping at the id check.
A DELETE aimed at a real session gets a throw-away session instead. Every response must:

- not be a 5xx (`not_a_server_error`),
- have a status the operation documents (`status_code_conformance`),
- have a content type the operation documents for that status (`content_type_conformance`),
- match the schema documented for that status (`response_schema_conformance`).

A 204 must come without a body. `test_the_fuzz_budget_was_spent` then checks that at least
MIN_TOTAL_CASES requests were made, that every operation got past the id check at least once
(real sessions were reached), and that the run stayed within its time budget.
`test_every_documented_status_has_a_model` checks the schema itself: every error status is
documented as the JSON error envelope, every body-taking route documents 400/413/415/422,
every route with a session id documents 404/422/503, 204 and redirects declare no body.

The schema is built from the app at import time (nothing starts: no lifespan, no store) and
used with `schema.parametrize()`; schemathesis' `from_fixture` loader does not work with
pytest 9 (it writes `request.node._nodeid`, which pytest 9 no longer has).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.repositories.users import owner_key
from app.settings import RATE_LIMIT_KINDS, Settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import FAMILY_AGREEING, SCRIPT
from tests.support.jwks import AUDIENCE, ISSUER, SIGNING_KEY, Issuer, jwks_server

SEED = 20261123
EXAMPLES_PER_OPERATION = 40  # hypothesis' fuzzing budget per operation (plus examples/coverage)
MIN_TOTAL_CASES = 300
TIME_BUDGET_SECONDS = 60.0
IMAGE_NAMES = ("user", "partner", "child_1", "child_2")
OWNER = "fuzz-owner"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _settings(data_dir: Path, jwks_url: str) -> Settings:
    return Settings(
        _env_file=None,
        hera_data_dir=data_dir,
        llm_provider="offline",
        session_type="file",
        storage_mode="local",
        # The limiter stays on (its code path is fuzzed too) with budgets the fuzzer's
        # hundreds of requests from one client do not exhaust.
        **{f"rate_limit_{kind}": "100000/minute" for kind in RATE_LIMIT_KINDS},
        # Accounts on (optional): guests and a signed-in person are both fuzzed.
        auth_mode="optional",
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
        auth_jwks_url=jwks_url,
        url_signing_key=SIGNING_KEY,
    )


# The schema is the app's own OpenAPI document. Building it starts nothing (no lifespan, no
# store); the requests go to the app of the `fuzz_target` fixture.
_CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "database": "none", "deterministic": True},
        "suppress-health-check": ["all"],
    }
)
schema = schemathesis.openapi.from_dict(
    create_app(_settings(Path("unused-data-dir"), "http://127.0.0.1:9/unused")).openapi(),
    config=_CONFIG,
)


class Target:
    """The app under test and the real sessions the fuzzer may address."""

    def __init__(self, app: FastAPI, client: asgi.ASGIClient, issuer: Issuer) -> None:
        self.app = app
        self.client = client
        self.issuer = issuer
        self.owner = issuer.bearer(OWNER)  # a signed-in person with a keepsake
        self.owner_key = owner_key(OWNER)
        self.fresh = self.create()
        self.finished = self.create()
        self.owned = self.create(self.owner)
        for sid, headers in ((self.finished, {}), (self.owned, self.owner)):
            self._converse(sid, headers)
        for sid, headers in ((self.fresh, {}), (self.finished, {}), (self.owned, self.owner)):
            files = {"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
            response = client.post(f"/api/sessions/{sid}/photos/user", files=files, headers=headers)
            assert response.status_code == 200, response.text
        for sid, headers in ((self.finished, {}), (self.owned, self.owner)):
            response = client.post(f"/api/sessions/{sid}/complete", headers=headers)
            assert response.status_code == 200, response.text
        for message in FAMILY_AGREEING:  # the owned session's plan is agreed: a keepsake
            response = client.post(
                f"/api/sessions/{self.owned}/family/messages",
                json={"message": message},
                headers=self.owner,
            )
            assert response.status_code == 200, response.text
        assert response.json()["conversation_complete"] is True, response.text
        self.ids = (self.fresh, self.finished, self.owned)
        self.cases = 0
        self.real_cases = 0
        self.statuses: dict[str, dict[int, int]] = {}  # operation -> status -> count
        self.started = time.monotonic()

    def create(self, headers: dict[str, str] | None = None) -> str:
        response = self.client.post("/api/sessions", headers=headers or {})
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    def sign_in(self, case: Any) -> None:
        """Every other case is the signed-in owner's (their own space, their session); a
        DELETE of someone's own space is a throw-away person's, so the owner keeps theirs."""
        if self.cases % 2 == 0:
            return
        erasing = case.method.upper() == "DELETE" and case.path.startswith("/api/users/me")
        bearer = self.issuer.bearer(f"throw-away-{self.cases}") if erasing else self.owner
        case.headers = {**(case.headers or {}), **bearer}

    def _converse(self, sid: str, headers: dict[str, str]) -> None:
        for line in SCRIPT:
            response = self.client.post(
                f"/api/sessions/{sid}/messages", json={"message": line}, headers=headers
            )
            assert response.status_code == 200, response.text
            if response.json()["profile_complete"]:
                return
        raise AssertionError("the scripted user did not complete the interview")


_TARGET: list[Target] = []  # set by the fixture; read by the hook and the tests


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with jwks_server() as jwks:
        app = create_app(_settings(tmp_path_factory.mktemp("fuzz") / "data", jwks.url))
        try:
            # Entering the client runs the app's lifespan (on schemathesis' event-loop thread).
            with asgi.get_client(cast(Any, app)) as client:
                _TARGET.append(Target(app, client, Issuer(jwks.keys[0])))
                yield _TARGET[-1]
        finally:
            asgi.shutdown_lifespans()


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """In part of the cases, address a real session (and a real image name, and the real
    owner of a keepsake)."""
    if not path_parameters or "session_id" not in path_parameters or not _TARGET:
        return st.just(path_parameters)
    real = [{**path_parameters, "session_id": sid} for sid in _TARGET[-1].ids]
    if "owner" in path_parameters:
        real = [{**params, "owner": _TARGET[-1].owner_key} for params in real]
    strategy = st.sampled_from([path_parameters, *real])
    if "name" in path_parameters:
        names = st.sampled_from([path_parameters["name"], *IMAGE_NAMES])
        strategy = st.builds(lambda params, name: {**params, "name": name}, strategy, names)
    return strategy


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, fuzz_target: Target) -> None:
    params = case.path_parameters or {}
    if params.get("session_id") in fuzz_target.ids:
        fuzz_target.real_cases += 1
        if case.method.upper() == "DELETE":
            params["session_id"] = fuzz_target.create()  # never delete the shared sessions
    fuzz_target.sign_in(case)
    response = case.call(app=fuzz_target.app)
    if response.status_code == 204:
        assert not response.content, "a 204 has no body"
    fuzz_target.cases += 1
    seen = fuzz_target.statuses.setdefault(_label(case.operation), {})
    seen[response.status_code] = seen.get(response.status_code, 0) + 1
    case.validate_response(response, checks=CHECKS)


def test_the_fuzz_budget_was_spent(fuzz_target: Target) -> None:
    if not fuzz_target.statuses:
        pytest.skip("the fuzz cases did not run in this session (deselected)")
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert set(fuzz_target.statuses) == {_label(op) for op in operations}
    assert fuzz_target.cases >= MIN_TOTAL_CASES, fuzz_target.statuses
    for op in operations:
        seen = fuzz_target.statuses[_label(op)]
        # Real sessions were reached: something other than "no such session" came back.
        assert set(seen) - {404, 405, 422}, f"{_label(op)} never got past the id check: {seen}"
    elapsed = time.monotonic() - fuzz_target.started
    assert elapsed < TIME_BUDGET_SECONDS, f"{fuzz_target.cases} cases took {elapsed:.1f} s"
    print(
        f"\n{fuzz_target.cases} cases ({fuzz_target.real_cases} on real sessions) in "
        f"{elapsed:.1f} s: {fuzz_target.statuses}"
    )


def _label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def test_every_documented_status_has_a_model() -> None:
    """Errors are documented as the JSON envelope; successes have a schema; 204/3xx no body."""
    document = schema.raw_schema
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), f"{where} has no summary"
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                code = int(status)
                if code == 204 or 300 <= code < 400:
                    assert not content, f"{where} {status} must not declare a body"
                elif code >= 400:
                    model = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                    names = {"ErrorResponse", "ConflictResponse", "NotReadyResponse"}
                    assert model in names, f"{where} {status} is documented as {model}"
                else:
                    assert content and all(c.get("schema") for c in content.values()), where
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(operation["responses"]), where
            if "{session_id}" in path:
                assert {"404", "422", "503"} <= set(operation["responses"]), where
