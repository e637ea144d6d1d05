"""Signed image URLs: `<img src>` sends no bearer token, so an owned session's image URL
carries its own proof (`exp` and an HMAC `sig` over the path and the expiry).

The owner's URL loads with no token at all; no token and no signature, a forged, tampered,
expired or replayed signature are the 404 of a missing session (also before a presigned
redirect); every worker with the same URL_SIGNING_KEY accepts the others' URLs; a guest
session's URLs stay plain. And the browser may send `Authorization` cross-origin.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from app.auth.urls import UrlSigner
from tests.api.accounts import create, ok, running, store_writes, upload_photo
from tests.api.conftest import STACKS, ApiClient, stack_settings
from tests.api.scripted_user import SCRIPT
from tests.support.api import assert_json_error
from tests.support.jwks import SIGNING_KEY, Issuer, JwksServer, auth_settings
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER = "owner-5d1e"
OTHER = "someone-else-0b7c"
FRONTEND = "http://localhost:3000"  # the default ALLOWED_ORIGINS


def split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def joined(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def signer(*, shift: float = 0.0, key: str = SIGNING_KEY, ttl: int = 600) -> UrlSigner:
    """A signer as a worker with `key` would have it (its clock `shift` seconds away)."""
    return UrlSigner(key=key.encode(), ttl_seconds=ttl, clock=lambda: time.time() + shift)


# ------------------------------------------------------------------------------ fixtures


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STACKS)
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer
) -> AsyncIterator[ApiClient]:
    tmp = tmp_path_factory.mktemp(f"signed-{request.param}")
    settings = stack_settings(request.param, tmp, request, rate_limits="off", **auth_settings(jwks))
    async with running(settings) as client:
        yield client


class Owned:
    """A session of OWNER with an uploaded photo, and the URL the upload returned."""

    def __init__(self, api: ApiClient, sid: str, url: str) -> None:
        self.api, self.sid, self.url = api, sid, url
        self.path, self.params = split(url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def owned(stack: ApiClient, issuer: Issuer) -> Owned:
    sid = await create(stack, issuer.bearer(OWNER))
    uploaded = ok(await upload_photo(stack, sid, issuer.bearer(OWNER)))
    return Owned(stack, sid, uploaded["image_url"])


async def status_of(api: ApiClient, url: str, headers: dict[str, str] | None = None) -> int:
    return (await api.get(url, headers=headers or {})).status_code


# ------------------------------------------------------------------------------ the owner's URLs
async def test_an_owners_upload_returns_a_signed_url_that_loads_without_any_token(
    owned: Owned, issuer: Issuer
) -> None:
    assert owned.path == f"/api/sessions/{owned.sid}/photos/user"
    assert set(owned.params) == {"v", "exp", "sig"}
    ttl = owned.api.settings.image_url_ttl
    assert time.time() < int(owned.params["exp"]) <= time.time() + ttl + 1

    loaded = await owned.api.get(owned.url)  # no Authorization header at all
    assert loaded.status_code == 200, loaded.text
    assert loaded.headers["content-type"] == "image/jpeg"
    with_token = await owned.api.get(owned.path, headers=issuer.bearer(OWNER))
    assert loaded.content == with_token.content and loaded.content[:2] == b"\xff\xd8"


async def test_the_owners_summary_lists_a_signed_url_for_every_image(
    owned: Owned, issuer: Issuer
) -> None:
    summary = ok(await owned.api.get(f"/api/sessions/{owned.sid}", headers=issuer.bearer(OWNER)))
    assert list(summary["image_urls"]) == ["user"]
    path, params = split(summary["image_urls"]["user"])
    assert path == owned.path
    assert set(params) == {"v", "exp", "sig"}
    assert params["v"] == owned.params["v"]  # same image, same version
    assert (await owned.api.get(summary["image_urls"]["user"])).status_code == 200


async def test_an_owned_photo_without_token_or_signature_is_the_404_of_a_missing_session(
    owned: Owned,
) -> None:
    missing = await owned.api.get(f"/api/sessions/{uuid.uuid4()}/photos/user")
    assert_json_error(missing, 404, "session_not_found")
    for url in (owned.path, joined(owned.path, {"v": owned.params["v"]})):
        refused = await owned.api.get(url)
        assert_json_error(refused, 404, "session_not_found")
        assert refused.json() == missing.json()


def _tampered(path: str, params: dict[str, str]) -> dict[str, dict[str, str]]:
    sig, exp = params["sig"], params["exp"]
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    without = {k: v for k, v in params.items() if k not in ("exp", "sig")}
    another_key = split("?" + signer(key="k" * 32).sign(path))[1]  # this path, another key
    return {
        "sig-flipped": {**params, "sig": flipped},
        "sig-truncated": {**params, "sig": sig[:-2]},
        "sig-empty": {**params, "sig": ""},
        "sig-missing": {**without, "exp": exp},
        "sig-of-another-key": {**without, **another_key},
        "exp-later": {**params, "exp": str(int(exp) + 3600)},
        "exp-earlier": {**params, "exp": str(int(exp) - 1)},
        "exp-missing": {**without, "sig": sig},
        "exp-negative": {**params, "exp": f"-{exp}"},
        "exp-too-long": {**params, "exp": "9" * 13},
        "exp-not-a-number": {**params, "exp": "soon"},
    }


TAMPERINGS = list(_tampered("/p", {"sig": "abc", "exp": "1", "v": "x"}))


@pytest.mark.parametrize("how", TAMPERINGS)
async def test_a_forged_or_tampered_signature_is_404(owned: Owned, how: str) -> None:
    params = _tampered(owned.path, owned.params)[how]
    with store_writes(owned.api) as writes:
        refused = await owned.api.get(joined(owned.path, params))
    assert_json_error(refused, 404, "session_not_found")
    assert writes == []
    assert (await owned.api.get(owned.url)).status_code == 200  # the genuine URL still works


@pytest.mark.parametrize("exp", ["²", "1²"], ids=["superscript-2", "1-superscript-2"])
async def test_an_expiry_of_digits_python_cannot_parse_is_404_not_500(
    owned: Owned, exp: str
) -> None:
    # `str.isdigit` holds for superscripts, which `int` refuses: an unauthenticated query
    # string must not be able to raise out of the signature check.
    for sid in (owned.sid, str(uuid.uuid4())):
        path = f"/api/sessions/{sid}/photos/user"
        response = await owned.api.get(joined(path, {"exp": exp, "sig": owned.params["sig"]}))
        assert_json_error(response, 404, "session_not_found")


async def test_a_signature_made_with_the_right_key_loads_until_it_expires(owned: Owned) -> None:
    # Another worker's signatures, with the same key: a fresh one loads; one that expired an
    # hour ago (with a valid MAC for that expiry) is refused.
    fresh = joined(owned.path, split("?" + signer().sign(owned.path))[1])
    assert (await owned.api.get(fresh)).status_code == 200
    expired = joined(owned.path, split("?" + signer(shift=-7200).sign(owned.path))[1])
    assert_json_error(await owned.api.get(expired), 404, "session_not_found")


async def test_a_url_of_one_image_or_session_does_not_open_another(
    stack: ApiClient, issuer: Issuer
) -> None:
    me, them = issuer.bearer(OWNER), issuer.bearer(OTHER)
    mine, also_mine, theirs = [await create(stack, who) for who in (me, me, them)]
    my_user = ok(await upload_photo(stack, mine, me))["image_url"]
    my_other_user = ok(await upload_photo(stack, also_mine, me))["image_url"]
    their_user = ok(await upload_photo(stack, theirs, them))["image_url"]
    for message in SCRIPT:  # a second image of the same session: the partner
        sent = await stack.post(
            f"/api/sessions/{mine}/messages", json={"message": message}, headers=me
        )
        if ok(sent)["profile_complete"]:
            break
    my_partner = ok(await stack.post(f"/api/sessions/{mine}/generate-image", headers=me))
    targets = (my_partner["image_url"], my_other_user, their_user)
    for url in (my_user, *targets):
        assert (await stack.get(url)).status_code == 200  # each genuine URL loads

    _, proof = split(my_user)
    for target in targets:
        path, params = split(target)
        replayed = await stack.get(
            joined(path, {**params, "exp": proof["exp"], "sig": proof["sig"]})
        )
        assert_json_error(replayed, 404, "session_not_found")


async def test_the_image_url_of_a_guest_session_is_plain_and_loads_without_a_token(
    stack: ApiClient,
) -> None:
    sid = await create(stack)
    url = ok(await upload_photo(stack, sid))["image_url"]
    path, params = split(url)
    assert path == f"/api/sessions/{sid}/photos/user"
    assert set(params) == {"v"}
    assert (await stack.get(url)).status_code == 200
    summary = ok(await stack.get(f"/api/sessions/{sid}"))
    assert summary["image_urls"] == {"user": url}


# ------------------------------------------------------------------------------ expiry
async def test_with_image_url_ttl_of_one_second_a_url_stops_loading(
    tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, issuer: Issuer
) -> None:
    settings = stack_settings(
        "file-disk", tmp_path, request, **auth_settings(jwks, image_url_ttl=1)
    )
    async with running(settings) as api:
        sid = await create(api, issuer.bearer(OWNER))
        ok(await upload_photo(api, sid, issuer.bearer(OWNER)))
        urls: list[str] = []

        async def a_fresh_url_loads() -> bool:
            summary = await api.get(f"/api/sessions/{sid}", headers=issuer.bearer(OWNER))
            urls.append(ok(summary)["image_urls"]["user"])
            return await status_of(api, urls[-1]) == 200

        await eventually(a_fresh_url_loads, within=5, what="a fresh signed URL loading")
        assert int(split(urls[-1])[1]["exp"]) <= time.time() + 1

        async def it_expired() -> bool:
            return await status_of(api, urls[-1]) == 404

        await eventually(it_expired, within=5, what="the one-second URL expiring")
        assert_json_error(await api.get(urls[-1]), 404, "session_not_found")
        assert await status_of(api, split(urls[-1])[0], issuer.bearer(OWNER)) == 200


# ------------------------------------------------------------------------------ several workers
@pytest.mark.parametrize("stack_name", STACKS)
async def test_two_workers_with_the_same_key_accept_each_others_urls(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    jwks: JwksServer,
    issuer: Issuer,
    stack_name: str,
) -> None:
    settings = stack_settings(stack_name, tmp_path, request, **auth_settings(jwks))
    other_key = settings.model_copy(
        update={"url_signing_key": SecretStr("another-signing-key-of-32-bytes-x!")}
    )
    # three apps over one store: two with the same key, one with another
    async with running(settings) as one, running(settings) as two, running(other_key) as three:
        sid = await create(one, issuer.bearer(OWNER))
        from_one = ok(await upload_photo(one, sid, issuer.bearer(OWNER)))["image_url"]
        summary = ok(await two.get(f"/api/sessions/{sid}", headers=issuer.bearer(OWNER)))
        from_two = summary["image_urls"]["user"]
        assert (await two.get(from_one)).status_code == 200
        assert (await one.get(from_two)).status_code == 200
        # a worker with another key sees the same session, and refuses both URLs
        assert await status_of(three, split(from_one)[0], issuer.bearer(OWNER)) == 200
        for url in (from_one, from_two):
            assert_json_error(await three.get(url), 404, "session_not_found")


# ------------------------------------------------------------------------------ presigned
async def test_in_presigned_mode_only_a_signed_url_gets_the_redirect(
    tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, issuer: Issuer
) -> None:
    settings = stack_settings(
        "redis-s3", tmp_path, request, blob_url_mode="presigned", **auth_settings(jwks)
    )
    async with running(settings) as api:
        sid = await create(api, issuer.bearer(OWNER))
        url = ok(await upload_photo(api, sid, issuer.bearer(OWNER)))["image_url"]
        path, params = split(url)

        redirect = await api.get(url)
        assert redirect.status_code == 307, redirect.text
        assert redirect.headers["cache-control"] == "no-store"
        location = redirect.headers["location"]
        assert location.startswith(str(settings.s3_endpoint_url))
        async with httpx.AsyncClient() as s3:
            image = await s3.get(location)
        assert image.status_code == 200
        assert image.content[:2] == b"\xff\xd8"

        tampered = {**params, "sig": params["sig"][::-1]}
        for refused_url in (path, joined(path, {"v": params["v"]}), joined(path, tampered)):
            refused = await api.get(refused_url)
            assert_json_error(refused, 404, "session_not_found")
            assert "location" not in refused.headers
        other = await api.get(path, headers=issuer.bearer(OTHER))
        assert_json_error(other, 404, "session_not_found")
        assert "location" not in other.headers
        assert (await api.get(path, headers=issuer.bearer(OWNER))).status_code == 307


# ------------------------------------------------------------------------------ CORS
async def test_the_frontend_origin_may_send_an_authorization_header(stack: ApiClient) -> None:
    assert stack.settings.allowed_origins == [FRONTEND]  # the default
    preflight = await stack.options(
        f"/api/sessions/{uuid.uuid4()}/photos/user",
        headers={
            "origin": FRONTEND,
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


async def test_the_frontend_can_read_the_challenge_of_a_401(stack: ApiClient) -> None:
    response = await stack.post(
        "/api/sessions", headers={"origin": FRONTEND, "authorization": "Bearer not-a-jwt"}
    )
    assert_json_error(response, 401, "invalid_token")
    assert response.headers["access-control-allow-origin"] == FRONTEND
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed
