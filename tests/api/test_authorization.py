"""Who may use a session: bearer tokens verified against the issuer's JWKS, and ownership.

The matrix: every session route × every kind of caller, on both stacks. The owner gets the
route's success; another signed-in person and a guest get exactly the 404 a missing session
gets (an owned session's existence is never revealed), except that claiming needs a token;
every bad token is 401 `invalid_token` with its `WWW-Authenticate` challenge. A write-spy on
the session and blob repositories proves that no refusal writes anything.

One app per stack serves the whole module (a JWKS server on a loopback port, one shared owned
session that went through the whole journey); a route that changes state gets a fresh owned
session for its owner case. The modes (`required`, `off`), claiming, creation and an
unreachable issuer follow.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.api.accounts import create, ok, running, store_writes, upload_photo
from tests.api.conftest import STACKS, ApiClient, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import SCRIPT
from tests.support.api import assert_json_error
from tests.support.jwks import Issuer, JwksServer, SigningKey, auth_settings, new_key
from tests.support.services import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER = "owner-7f3a"
OTHER = "someone-else-91c2"
CHALLENGE = 'Bearer error="invalid_token"'


# ------------------------------------------------------------------------------ tokens
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _handmade(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """A JWT assembled by hand (PyJWT refuses to mint the forgeries below)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


@dataclass
class Tokens:
    issuer: Issuer
    unpublished: SigningKey  # a key the JWKS server never served

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def owner(self) -> dict[str, str]:
        return self.issuer.bearer(OWNER)

    def other(self) -> dict[str, str]:
        return self.issuer.bearer(OTHER)

    def expired(self) -> dict[str, str]:
        now = int(time.time())  # well past the 60 s leeway
        return self.bearer(self.issuer.token(OWNER, iat=now - 7200, exp=now - 3600))

    def wrong_audience(self) -> dict[str, str]:
        return self.bearer(self.issuer.token(OWNER, aud="some-other-app"))

    def wrong_issuer(self) -> dict[str, str]:
        return self.bearer(self.issuer.token(OWNER, iss="https://evil.test"))

    def alg_none(self) -> dict[str, str]:
        header = {"alg": "none", "typ": "JWT", "kid": self.issuer.key.kid}
        return self.bearer(_handmade(header, self.issuer.claims(OWNER), lambda _: b""))

    def hs256_with_public_key(self) -> dict[str, str]:
        # The classic confusion: HMAC keyed with the RSA public key everyone can fetch.
        public = self.issuer.key.public_pem()
        header = {"alg": "HS256", "typ": "JWT", "kid": self.issuer.key.kid}
        token = _handmade(
            header, self.issuer.claims(OWNER), lambda data: hmac.new(public, data, sha256).digest()
        )
        return self.bearer(token)

    def unknown_kid(self) -> dict[str, str]:
        return self.bearer(self.issuer.token(OWNER, key=self.unpublished))

    def garbage(self) -> dict[str, str]:
        return self.bearer("not.a-jwt.at-all")


BAD_CALLERS = [
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "alg_none",
    "hs256_with_public_key",
    "unknown_kid",
    "garbage",
]


# ------------------------------------------------------------------------------ routes
@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    success: int
    # The owner's case: None = read-only (the shared session serves), else the stage a fresh
    # owned session must reach first; `writes` = whether the owner's success writes.
    stage: str | None = None
    writes: bool = False
    body: dict[str, Any] | None = None
    upload: bool = False

    async def send(self, api: ApiClient, sid: str, headers: dict[str, str]) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": headers}
        if self.body is not None:
            kwargs["json"] = self.body
        if self.upload:
            kwargs["files"] = {"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
        return await api.request(self.method, self.path.format(sid=sid), **kwargs)


S = "/api/sessions/{sid}"
FAMILY_HELLO = {"message": "こんにちは、みんな元気？"}
ROUTES = [
    Route("summary", "GET", S, 200),
    Route("delete", "DELETE", S, 204, stage="new", writes=True),
    Route("status", "GET", f"{S}/status", 200),
    Route("message", "POST", f"{S}/messages", 200, "new", True, {"message": SCRIPT[0]}),
    Route("complete", "POST", f"{S}/complete", 200, stage="interviewed", writes=True),
    Route("family-status", "GET", f"{S}/family/status", 200),
    Route("family-message", "POST", f"{S}/family/messages", 200, "completed", True, FAMILY_HELLO),
    Route("upload", "POST", f"{S}/photos/user", 200, stage="new", writes=True, upload=True),
    Route("photo", "GET", f"{S}/photos/user", 200),
    Route("partner-image", "POST", f"{S}/generate-image", 200, "interviewed", True, {}),
    Route("child-images", "POST", f"{S}/generate-child-image", 200, "partnered", writes=True),
    Route("claim", "POST", f"{S}/claim", 200, stage="new"),  # one's own session: a no-op
]
ROUTE_IDS = [r.name for r in ROUTES]


STAGES = {
    "new": (),
    "interviewed": ("interview",),
    "partnered": ("interview", "upload", "partner"),
    "completed": ("interview", "complete"),
    "done": ("interview", "upload", "partner", "children", "complete"),
}


async def advance(api: ApiClient, sid: str, headers: dict[str, str], stage: str) -> None:
    """Take a new session to `stage` (what a route needs before it can succeed)."""
    for step in STAGES[stage]:
        if step == "interview":
            for message in SCRIPT:
                body = {"message": message}
                sent = await api.post(f"/api/sessions/{sid}/messages", json=body, headers=headers)
                if ok(sent)["profile_complete"]:
                    break
            else:
                raise AssertionError("the scripted interview did not complete the profile")
        elif step == "upload":
            ok(await upload_photo(api, sid, headers))
        elif step == "partner":
            ok(await api.post(f"/api/sessions/{sid}/generate-image", headers=headers))
        elif step == "children":
            ok(await api.post(f"/api/sessions/{sid}/generate-child-image", headers=headers))
        else:
            ok(await api.post(f"/api/sessions/{sid}/complete", headers=headers))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tokens(jwks: JwksServer) -> Tokens:
    return Tokens(Issuer(jwks.keys[0]), new_key("EC", kid="never-published"))


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STACKS)
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer
) -> AsyncIterator[ApiClient]:
    """One app per stack for the module (optional sign-in, no rate limits)."""
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    settings = stack_settings(request.param, tmp, request, rate_limits="off", **auth_settings(jwks))
    async with running(settings) as client:
        yield client


@dataclass
class Shared:
    sid: str  # owned by OWNER, through the whole journey (every image, the family)
    stack: ApiClient
    missing: str = field(default_factory=lambda: str(uuid.uuid4()))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(stack: ApiClient, tokens: Tokens) -> Shared:
    sid = await create(stack, tokens.owner())
    await advance(stack, sid, tokens.owner(), "done")
    return Shared(sid, stack)


# ------------------------------------------------------------------------------ the matrix
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_the_owner_gets_each_routes_success(
    shared: Shared, tokens: Tokens, route: Route
) -> None:
    api = shared.stack
    sid = shared.sid
    if route.stage is not None:
        sid = await create(api, tokens.owner())
        await advance(api, sid, tokens.owner(), route.stage)
    with store_writes(api) as writes:
        response = await route.send(api, sid, tokens.owner())
    assert response.status_code == route.success, response.text
    # The spy sees the owner's writes (so its silence below means something), and a read or
    # a repeated claim writes nothing of the session (a claim puts its index entry again:
    # the same entry, a repair if a crash came between the first claim's commit and index).
    session_writes = [w for w in writes if w != "users.index_add" or route.name != "claim"]
    assert bool(session_writes) is route.writes, writes


@pytest.mark.parametrize("who", ["other", "guest"])
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_anyone_but_the_owner_gets_the_404_of_a_missing_session(
    shared: Shared, tokens: Tokens, route: Route, who: str
) -> None:
    api = shared.stack
    headers = tokens.other() if who == "other" else {}
    with store_writes(api) as writes:
        refused = await route.send(api, shared.sid, headers)
        missing = await route.send(api, shared.missing, headers)
    assert writes == []
    if route.name == "claim" and who == "guest":  # only a signed-in person can claim
        assert_json_error(refused, 401, "auth_required")
        assert_json_error(missing, 401, "auth_required")
        assert refused.headers["www-authenticate"] == "Bearer"
        return
    assert_json_error(missing, 404, "session_not_found")
    assert_json_error(refused, 404, "session_not_found")
    assert refused.json() == missing.json()
    assert "www-authenticate" not in refused.headers
    # and the owner still has it, untouched
    assert (await api.get(f"/api/sessions/{shared.sid}", headers=tokens.owner())).status_code == 200


@pytest.mark.parametrize("bad", BAD_CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_every_bad_token_is_401_invalid_token_and_writes_nothing(
    shared: Shared, tokens: Tokens, route: Route, bad: str
) -> None:
    api = shared.stack
    with store_writes(api) as writes:
        response = await route.send(api, shared.sid, getattr(tokens, bad)())
    assert writes == []
    assert_json_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == CHALLENGE


async def test_a_handmade_token_signed_properly_is_accepted(shared: Shared, tokens: Tokens) -> None:
    """The control of the hand-made forgeries above: the same assembly, signed RS256 with the
    published key, is a valid token, so their 401 comes from the algorithm alone."""
    key = tokens.issuer.key
    header = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    token = _handmade(
        header,
        tokens.issuer.claims(OWNER),
        lambda data: key.private.sign(data, padding.PKCS1v15(), hashes.SHA256()),
    )
    response = await shared.stack.get(f"/api/sessions/{shared.sid}", headers=tokens.bearer(token))
    assert ok(response)["session_id"] == shared.sid


# ------------------------------------------------------------------------------ creation
async def test_a_session_created_with_a_token_belongs_to_its_subject(
    stack: ApiClient, tokens: Tokens
) -> None:
    sid = await create(stack, tokens.owner())
    mine = ok(await stack.get(f"/api/sessions/{sid}", headers=tokens.owner()))
    assert mine["session_id"] == sid
    assert mine["image_urls"] == {}
    for headers in (tokens.other(), {}):
        refused = await stack.get(f"/api/sessions/{sid}", headers=headers)
        assert_json_error(refused, 404, "session_not_found")


async def test_a_session_created_without_a_token_is_anyones_who_holds_its_id(
    stack: ApiClient, tokens: Tokens
) -> None:
    sid = await create(stack)
    for headers in ({}, tokens.owner(), tokens.other()):
        assert ok(await stack.get(f"/api/sessions/{sid}", headers=headers))["session_id"] == sid


@pytest.mark.parametrize("bad", BAD_CALLERS)
async def test_a_bad_token_creates_no_session(stack: ApiClient, tokens: Tokens, bad: str) -> None:
    with store_writes(stack) as writes:
        response = await stack.post("/api/sessions", headers=getattr(tokens, bad)())
    assert_json_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == CHALLENGE
    assert writes == []


# ------------------------------------------------------------------------------ claim
async def test_a_claimed_guest_session_keeps_its_data_and_serves_only_its_new_owner(
    stack: ApiClient, tokens: Tokens
) -> None:
    sid = await create(stack)
    ok(await stack.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]}))
    ok(await upload_photo(stack, sid, {}))  # a guest upload

    claimed = ok(await stack.post(f"/api/sessions/{sid}/claim", headers=tokens.owner()))
    assert claimed["session_id"] == sid
    assert claimed["images"] == ["user"]
    assert "sig=" in claimed["image_urls"]["user"]  # the new owner's URL is signed now

    status = ok(await stack.get(f"/api/sessions/{sid}/status", headers=tokens.owner()))
    assert status["conversation_history"][0]["message"] == SCRIPT[0]
    for headers in ({}, tokens.other()):
        status = await stack.get(f"/api/sessions/{sid}/status", headers=headers)
        assert_json_error(status, 404, "session_not_found")
        photo = await stack.get(f"/api/sessions/{sid}/photos/user", headers=headers)
        assert_json_error(photo, 404, "session_not_found")


async def test_claiming_ones_own_session_again_is_a_200_that_changes_nothing(
    stack: ApiClient, tokens: Tokens
) -> None:
    sid = await create(stack)
    first = ok(await stack.post(f"/api/sessions/{sid}/claim", headers=tokens.owner()))
    with store_writes(stack) as writes:
        again = ok(await stack.post(f"/api/sessions/{sid}/claim", headers=tokens.owner()))
    assert writes == ["users.index_add"]  # the same entry put again (a repair), nothing else
    assert again["session_id"] == first["session_id"] == sid
    assert again["updated_at"] == first["updated_at"]


async def test_someone_elses_claimed_session_cannot_be_claimed(
    stack: ApiClient, tokens: Tokens
) -> None:
    sid = await create(stack)
    ok(await stack.post(f"/api/sessions/{sid}/claim", headers=tokens.owner()))
    with store_writes(stack) as writes:
        stolen = await stack.post(f"/api/sessions/{sid}/claim", headers=tokens.other())
        missing = await stack.post(f"/api/sessions/{uuid.uuid4()}/claim", headers=tokens.other())
    assert writes == []
    assert_json_error(stolen, 404, "session_not_found")
    assert stolen.json() == missing.json()
    assert ok(await stack.get(f"/api/sessions/{sid}", headers=tokens.owner()))["session_id"] == sid
    assert_json_error(await stack.get(f"/api/sessions/{sid}", headers=tokens.other()), 404)


async def test_claiming_without_a_token_is_401_and_the_session_stays_a_guests(
    stack: ApiClient,
) -> None:
    sid = await create(stack)
    with store_writes(stack) as writes:
        response = await stack.post(f"/api/sessions/{sid}/claim")
    assert writes == []
    assert_json_error(response, 401, "auth_required")
    assert response.headers["www-authenticate"] == "Bearer"
    assert ok(await stack.get(f"/api/sessions/{sid}"))["session_id"] == sid


# ------------------------------------------------------------------------------ modes
def local_settings(tmp_path: Path, request: pytest.FixtureRequest, **overrides: Any) -> Any:
    return stack_settings("file-disk", tmp_path, request, rate_limits="off", **overrides)


async def test_auth_mode_required_refuses_guests_and_serves_a_token(
    tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, tokens: Tokens
) -> None:
    settings = local_settings(tmp_path, request, **auth_settings(jwks, auth_mode="required"))
    async with running(settings) as api:
        with store_writes(api) as writes:
            refused = await api.post("/api/sessions")
        assert writes == []
        assert_json_error(refused, 401, "auth_required")
        assert refused.headers["www-authenticate"] == "Bearer"

        sid = await create(api, tokens.owner())
        mine = ok(await api.get(f"/api/sessions/{sid}", headers=tokens.owner()))
        assert mine["session_id"] == sid
        paths = [f"/api/sessions/{sid}", f"/api/sessions/{sid}/status"]
        paths += [f"/api/sessions/{sid}/photos/user", f"/api/sessions/{uuid.uuid4()}"]
        for path in paths:
            assert_json_error(await api.get(path), 401, "auth_required")
        with store_writes(api) as writes:
            message = await api.post(f"/api/sessions/{sid}/messages", json={"message": "やあ"})
        assert writes == []
        assert_json_error(message, 401, "auth_required")
        # a bad token is still invalid, not merely missing
        bad = await api.get(f"/api/sessions/{sid}", headers=tokens.garbage())
        assert_json_error(bad, 401, "invalid_token")


async def test_auth_mode_required_closes_guest_sessions_made_before_it(
    tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, tokens: Tokens
) -> None:
    optional = local_settings(tmp_path, request, **auth_settings(jwks))
    async with running(optional) as api:
        guest = await create(api)
    required = optional.model_copy(update={"auth_mode": "required"})  # the same data dir
    async with running(required) as api:
        for path in (f"/api/sessions/{guest}", f"/api/sessions/{guest}/photos/user"):
            assert_json_error(await api.get(path), 401, "auth_required")
        # a signed-in person holding the id may still use it (a guest session is anyone's)
        assert ok(await api.get(f"/api/sessions/{guest}", headers=tokens.other()))


async def test_auth_mode_off_ignores_even_a_garbage_bearer_header(
    tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, tokens: Tokens
) -> None:
    settings = local_settings(tmp_path, request, auth_mode="off")
    async with running(settings) as api:
        sid = await create(api, tokens.garbage())
        read = ok(await api.get(f"/api/sessions/{sid}", headers=tokens.expired()))
        assert read["session_id"] == sid
        # even a valid token makes no owner: the session stays anyone's who holds its id
        owned = await create(api, tokens.owner())
        uploaded = ok(await upload_photo(api, owned, tokens.owner()))
        assert "sig=" not in uploaded["image_url"]
        assert (await api.get(uploaded["image_url"])).status_code == 200
        assert ok(await api.get(f"/api/sessions/{owned}"))["session_id"] == owned


async def test_a_never_fetched_unreachable_jwks_is_503_auth_unavailable(
    tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, tokens: Tokens
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    settings = local_settings(tmp_path, request, **auth_settings(jwks, auth_jwks_url=closed))
    async with running(settings) as api:
        guest = await create(api)  # a guest needs no keys
        for _ in range(2):  # the second within the refetch interval: still no key at all
            response = await api.get(f"/api/sessions/{guest}", headers=tokens.owner())
            assert_json_error(response, 503, "auth_unavailable")
            assert response.headers["retry-after"] == "30"
        with store_writes(api) as writes:
            create_refused = await api.post("/api/sessions", headers=tokens.owner())
        assert_json_error(create_refused, 503, "auth_unavailable")
        assert writes == []
        # a malformed token is refused without asking for keys
        malformed = await api.get(f"/api/sessions/{guest}", headers=tokens.garbage())
        assert_json_error(malformed, 401, "invalid_token")
        assert ok(await api.get(f"/api/sessions/{guest}"))["session_id"] == guest
