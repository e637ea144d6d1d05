"""A signed-in person's own space: their record and tags, their sessions, their keepsakes, and
erasing all of it (`/api/users/me*`, `/api/profile`, `/api/keepsakes/...`).

What is proved, on the file+disk and Redis+S3 stacks where the stores matter:
- a keepsake (story, letter, trip plan, copies of the family's images) outlives its session:
  the session expires (SESSION_TTL=2), the keepsake is still listed and every image URL in it
  loads without a token, with the bytes the session served; the expired session leaves the
  person's session list (and its index) when the listing meets it;
- a keepsake is written once whatever repeats it (a retried agreeing turn, a claim), survives
  deleting its session, and a claimed guest session gets one only once its plan is agreed;
- the routes' shapes and validation; every route refuses a missing or bad token;
- pagination lists each of 250 keepsakes exactly once, newest first; bad limits and cursors
  are 4xx JSON;
- another person never reads, lists or deletes any of it;
- erasing a person leaves nothing naming them or their sessions in Redis, the bucket or the
  data directory, and leaves everyone else's data as it was.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis.asyncio

from app.agents.keepsakes import DOCUMENT, keepsake_prefix
from app.repositories.base import read_all, session_blob_prefix
from app.repositories.users import MAX_TAGS, owner_key
from app.settings import Settings
from tests.api.accounts import create, ok, running, store_writes, upload_photo
from tests.api.conftest import STACKS, ApiClient, stack_settings
from tests.api.scripted_user import FAMILY_AGREEING, SCRIPT
from tests.support.api import assert_json_error
from tests.support.jwks import Issuer, JwksServer, auth_settings
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAMILY = FAMILY_AGREEING
IMAGE_NAMES = {"user", "partner", "child_1", "child_2"}
BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
Headers = dict[str, str]


# ------------------------------------------------------------------------------ fixtures


def settings_for(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest, jwks: JwksServer, **extra: Any
) -> Settings:
    return stack_settings(
        stack, tmp_path, request, rate_limits="off", **auth_settings(jwks), **extra
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STACKS)
async def space(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer
) -> AsyncIterator[ApiClient]:
    """One app per stack for the tests that need no store of their own (each test signs in
    as people of its own)."""
    tmp = tmp_path_factory.mktemp(f"space-{request.param}")
    async with running(settings_for(request.param, tmp, request, jwks)) as client:
        yield client


def someone(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def keyed(headers: Headers) -> Headers:
    """The headers with a fresh Idempotency-Key, as the bundled frontend sends on every POST."""
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


def posting(headers: Headers, keys: bool) -> Headers:
    return keyed(headers) if keys else headers


# ------------------------------------------------------------------------------ journeys
async def interview(
    api: ApiClient, headers: Headers, messages: tuple[str, ...] = SCRIPT[:6], keys: bool = False
) -> str:
    """A session told `messages` (by default the scripted user's six answers: everything)."""
    sid = await create(api, posting(headers, keys))
    for message in messages:
        body = ok(
            await api.post(
                f"/api/sessions/{sid}/messages",
                json={"message": message},
                headers=posting(headers, keys),
            )
        )
    assert body["profile_complete"] is (len(messages) >= 6), body
    return sid


async def with_images(api: ApiClient, sid: str, headers: Headers, keys: bool = False) -> None:
    ok(await upload_photo(api, sid, posting(headers, keys)))
    for route in ("generate-image", "generate-child-image"):
        ok(await api.post(f"/api/sessions/{sid}/{route}", headers=posting(headers, keys)))


async def agree(
    api: ApiClient,
    sid: str,
    headers: Headers,
    *,
    agree_key: str | None = None,
    keys: bool = False,
) -> dict[str, Any]:
    """Complete the interview and talk with the family until the plan is agreed; the last
    (agreeing) turn carries `agree_key` when given."""
    ok(await api.post(f"/api/sessions/{sid}/complete", headers=posting(headers, keys)))
    body: dict[str, Any] = {}
    for index, message in enumerate(FAMILY):
        turn = dict(posting(headers, keys))
        if agree_key is not None and index == len(FAMILY) - 1:
            turn["Idempotency-Key"] = agree_key
        body = ok(
            await api.post(
                f"/api/sessions/{sid}/family/messages", json={"message": message}, headers=turn
            )
        )
    assert body["conversation_complete"] is True, body
    return body


async def journey(
    api: ApiClient, headers: Headers, *, agree_key: str | None = None, keys: bool = False
) -> str:
    """The README journey: interview, photo, partner and child images, family, agreed plan."""
    sid = await interview(api, headers, keys=keys)
    await with_images(api, sid, headers, keys=keys)
    await agree(api, sid, headers, agree_key=agree_key, keys=keys)
    return sid


# ------------------------------------------------------------------------------ reading back
async def artifacts(api: ApiClient, headers: Headers) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(
        await api.get("/api/users/me/artifacts", params={"limit": 100}, headers=headers)
    )["artifacts"]
    return found


async def my_sessions(api: ApiClient, headers: Headers) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(
        await api.get("/api/users/me/sessions", params={"limit": 100}, headers=headers)
    )["sessions"]
    return found


def image_urls(artifact: dict[str, Any]) -> dict[str, str]:
    """Logical image name -> URL of every image of an artifact."""
    images = artifact["images"]
    urls = {"user": images["user"], "partner": images["partner"]}
    for index, child in enumerate(images["children"], start=1):
        urls[f"child_{index}"] = child["image_path"]
    return urls


def unsigned(artifact: dict[str, Any]) -> dict[str, Any]:
    """An artifact with its URLs' signatures (which carry a fresh expiry) left off."""
    copy = json.loads(json.dumps(artifact))
    images = copy["images"]
    for name in ("user", "partner"):
        if images[name]:
            images[name] = images[name].split("?")[0]
    for child in images["children"]:
        if child["image_path"]:
            child["image_path"] = child["image_path"].split("?")[0]
    return copy  # type: ignore[no-any-return]


async def loads_as_image(api: ApiClient, url: str, headers: Headers | None = None) -> bytes:
    """GET `url` (with no token unless given): 200, an image content type; its bytes."""
    response = await api.get(url, headers=headers or {})
    assert response.status_code == 200, (url, response.text)
    assert response.headers["content-type"].startswith("image/"), response.headers
    assert response.content
    return response.content


async def stored(api: ApiClient) -> dict[str, bytes]:
    """Everything the app's stores hold: every file under the data directory, every key of the
    Redis namespace (found with SCAN) with its value, every object of the bucket with its body.
    Name -> content."""
    settings = api.settings
    found: dict[str, bytes] = {}
    root = settings.hera_data_dir
    if root.exists():
        for path in root.rglob("*"):
            if path.is_file():
                found[f"file:{path.relative_to(root)}"] = path.read_bytes()
            else:  # a folder named after something is a trace of it too
                found[f"file:{path.relative_to(root)}/"] = b""
    if settings.resolved_session_type == "redis":
        assert settings.redis_url is not None
        client = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            async for key in client.scan_iter(match=f"{settings.redis_namespace}:*", count=500):
                found[f"redis:{_raw(key).decode()}"] = await _redis_value(client, key)
        finally:
            await client.aclose()
    if settings.resolved_blob_type == "s3":
        found.update(await asyncio.to_thread(_bucket_objects, settings))
    return found


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def _redis_value(client: redis.asyncio.Redis, key: bytes) -> bytes:
    """A key's value as bytes, whatever its type (the client answers in bytes)."""
    kind = _raw(await client.type(key))
    parts: Any
    if kind == b"string":
        parts = [await client.get(key)]
    elif kind == b"hash":
        parts = [x for pair in (await client.hgetall(key)).items() for x in pair]
    elif kind == b"list":
        parts = await client.lrange(key, 0, -1)
    elif kind == b"set":
        parts = await client.smembers(key)
    elif kind == b"zset":
        parts = await client.zrange(key, 0, -1)
    else:
        parts = []  # expired between SCAN and TYPE
    return b"\n".join(_raw(part) for part in parts if part is not None)


def _bucket_objects(settings: Settings) -> dict[str, bytes]:
    from tests.support.servers import s3_client

    assert settings.s3_endpoint_url is not None
    s3 = s3_client(settings.s3_endpoint_url)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket_name)
    return {
        f"s3:{obj['Key']}": s3.get_object(Bucket=settings.s3_bucket_name, Key=obj["Key"])[
            "Body"
        ].read()
        for page in pages
        for obj in page.get("Contents", [])
    }


def naming(everything: dict[str, bytes], needle: str) -> list[str]:
    """The stored names whose name or content contains `needle`."""
    raw = needle.encode()
    return sorted(
        name for name, content in everything.items() if raw in name.encode() or raw in content
    )


def keepsake_objects(everything: dict[str, bytes], subject: str) -> dict[str, bytes]:
    """The blobs (bucket objects, or the disk store's object files) of a person's keepsakes."""
    marks = (f"s3:users/{owner_key(subject)}/keepsakes/",
             f"file:blobs/objects/users/{owner_key(subject)}/keepsakes/")  # fmt: skip
    return {
        name: content
        for name, content in everything.items()
        if name.startswith(marks) and not name.endswith("/")
    }


async def session_gone(api: ApiClient, sid: str, headers: Headers) -> bool:
    response = await api.get(f"/api/sessions/{sid}", headers=headers)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 404


# ------------------------------------------------------------------------------ durability
@pytest.mark.parametrize("stack", STACKS)
async def test_a_keepsake_outlives_its_expired_session_and_every_image_in_it_still_loads(
    stack: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    jwks: JwksServer,
    issuer: Issuer,
) -> None:
    subject = someone("durable")
    me = issuer.bearer(subject)
    async with running(settings_for(stack, tmp_path, request, jwks, session_ttl=2)) as api:
        sid = await journey(api, me)
        summary = ok(await api.get(f"/api/sessions/{sid}", headers=me))
        served = {
            name: await loads_as_image(api, url) for name, url in summary["image_urls"].items()
        }
        assert set(served) == IMAGE_NAMES
        [before] = await artifacts(api, me)
        users, owner = api.app.state.services.users, owner_key(subject)
        listed = await users.index_page(owner_key=owner, index="sessions", limit=10)
        assert [e.item_id for e in listed.entries] == [sid]

        await eventually(lambda: session_gone(api, sid, me), within=20, what="the session expiring")
        if stack.startswith("redis"):  # its keys expired by themselves
            assert not [n for n in await stored(api) if n.startswith("redis:") and sid in n]
        # What `hera prune --orphan-blobs` does to an expired session: its images go too. The
        # keepsake's are copies of its own.
        assert await api.app.state.services.blobs.delete_prefix(
            prefix=session_blob_prefix(sid)
        ) == len(IMAGE_NAMES)

        [after] = await artifacts(api, me)
        assert unsigned(after) == unsigned(before)
        assert after["session_id"] == sid
        assert isinstance(after["story"], str) and after["story"].strip()
        assert set(after["letter"]) == {"content", "from"}
        assert after["letter"]["content"].strip()
        assert after["letter"]["from"] == "健太、太郎、花子"
        assert after["trip_plan"]["destination"] == "沖縄"
        assert after["trip_plan"]["activities"]
        assert [c["name"] for c in after["images"]["children"]] == ["太郎", "花子"]
        urls = image_urls(after)
        assert set(urls) == IMAGE_NAMES and all(urls.values()), urls
        for name, url in urls.items():
            assert urlsplit(url).path == f"/api/keepsakes/{owner}/{sid}/{name}"
            assert await loads_as_image(api, url) == served[name], name  # no token at all
            assert (await api.get(url.split("?")[0])).status_code == 404  # no signature

        # The expired session leaves the list (and the index) when the listing meets it.
        assert await my_sessions(api, me) == []
        listed = await users.index_page(owner_key=owner, index="sessions", limit=10)
        assert listed.entries == []
        kept = await users.index_page(owner_key=owner, index="keepsakes", limit=10)
        assert [e.item_id for e in kept.entries] == [sid]


# ------------------------------------------------------------------------------ written once
@pytest.mark.parametrize("stack", STACKS)
async def test_a_keepsake_is_written_once_whatever_repeats_it_and_outlives_deleting_its_session(
    stack: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    jwks: JwksServer,
    issuer: Issuer,
) -> None:
    subject = someone("once")
    me = issuer.bearer(subject)
    async with running(settings_for(stack, tmp_path, request, jwks)) as api:
        agree_key = uuid.uuid4().hex
        sid = await journey(api, me, agree_key=agree_key)
        [first] = await artifacts(api, me)
        assert first["session_id"] == sid
        objects = keepsake_objects(await stored(api), subject)
        prefix = keepsake_prefix(owner_key(subject), sid)
        assert len(objects) == 1 + len(IMAGE_NAMES), sorted(objects)
        assert all(prefix in name for name in objects), sorted(objects)
        assert sum(name.endswith(DOCUMENT) for name in objects) == 1

        # The agreeing turn retried with its key: the same answer, the same one keepsake.
        retry = await api.post(
            f"/api/sessions/{sid}/family/messages",
            json={"message": FAMILY[-1]},
            headers={**me, "Idempotency-Key": agree_key},
        )
        assert retry.status_code == 200, retry.text
        assert retry.json()["conversation_complete"] is True
        # The agreement said again without a key (the plan stands), and a claim of one's own.
        again = await api.post(
            f"/api/sessions/{sid}/family/messages", json={"message": FAMILY[-1]}, headers=me
        )
        assert again.status_code == 200, again.text  # the closing reply; nothing changes
        ok(await api.post(f"/api/sessions/{sid}/claim", headers=me))

        listed = await artifacts(api, me)
        assert [unsigned(a) for a in listed] == [unsigned(first)]
        assert keepsake_objects(await stored(api), subject) == objects
        keepsakes = await api.app.state.services.users.index_page(
            owner_key=owner_key(subject), index="keepsakes", limit=10
        )
        assert [e.item_id for e in keepsakes.entries] == [sid]

        # Deleting the session keeps the keepsake, images and all.
        assert (await api.delete(f"/api/sessions/{sid}", headers=me)).status_code == 204
        assert (await api.get(f"/api/sessions/{sid}", headers=me)).status_code == 404
        [kept] = await artifacts(api, me)
        assert unsigned(kept) == unsigned(first)
        for url in image_urls(kept).values():
            await loads_as_image(api, url)
        assert keepsake_objects(await stored(api), subject) == objects


async def test_claiming_a_guest_session_keeps_it_only_once_its_plan_is_agreed(
    space: ApiClient, issuer: Issuer
) -> None:
    subject = someone("claimer")
    me = issuer.bearer(subject)
    agreed = await journey(space, {})  # a guest all the way to the agreed plan
    chatting = await interview(space, {})  # the interview done, the family not yet agreed
    ok(await space.post(f"/api/sessions/{chatting}/complete"))
    ok(await space.post(f"/api/sessions/{chatting}/family/messages", json={"message": FAMILY[0]}))
    started = await create(space)  # barely begun
    ok(await space.post(f"/api/sessions/{started}/messages", json={"message": SCRIPT[0]}))

    for sid in (chatting, started):
        ok(await space.post(f"/api/sessions/{sid}/claim", headers=me))
    assert await artifacts(space, me) == []

    ok(await space.post(f"/api/sessions/{agreed}/claim", headers=me))
    [artifact] = await artifacts(space, me)
    assert artifact["session_id"] == agreed
    assert artifact["trip_plan"]["destination"] == "沖縄"
    assert artifact["letter"]["content"].strip() and artifact["story"].strip()
    urls = image_urls(artifact)
    assert set(urls) == IMAGE_NAMES and all(urls.values()), urls
    for url in urls.values():
        await loads_as_image(space, url)

    ok(await space.post(f"/api/sessions/{agreed}/claim", headers=me))  # again: nothing new
    assert [a["session_id"] for a in await artifacts(space, me)] == [agreed]
    listed = {s["session_id"] for s in await my_sessions(space, me)}
    assert listed == {agreed, chatting, started}


# ------------------------------------------------------------------------------ the record
async def test_me_shows_the_tokens_claims_and_nothing_stored_for_someone_new(
    space: ApiClient, issuer: Issuer
) -> None:
    subject = someone("new")
    picture = "https://example.com/p.png"
    me = ok(await space.get("/api/users/me", headers=issuer.bearer(subject, picture=picture)))
    assert me == {
        "uid": subject,
        "email": f"{subject}@example.com",
        "name": "テスト ユーザー",
        "picture": picture,
        "age": None,
        "location": None,
        "personality_traits": {},
        "tags": [],
        "created_at": None,
        "updated_at": None,
    }
    odd = ok(await space.get("/api/users/me", headers=issuer.bearer(subject, email=7, name=["x"])))
    assert odd["email"] is None and odd["name"] is None and odd["picture"] is None


async def test_a_put_changes_only_the_fields_it_sends_and_the_record_reads_back(
    space: ApiClient, issuer: Issuer
) -> None:
    subject = someone("put")
    me = issuer.bearer(subject)
    first = ok(await space.put("/api/users/me", json={"age": 33}, headers=me))
    assert first["age"] == 33 and first["location"] is None and first["name"] == "テスト ユーザー"
    assert first["created_at"] is not None and first["updated_at"] is not None

    ok(await space.put("/api/users/me", json={"location": "大阪"}, headers=me))
    ok(await space.put("/api/users/me", json={"personality_traits": {"openness": 0.9}}, headers=me))
    ok(
        await space.put(
            "/api/users/me", json={"personality_traits": {"extraversion": 0}}, headers=me
        )
    )
    last = ok(await space.put("/api/users/me", json={"name": "花子"}, headers=me))
    assert last["uid"] == subject and last["email"] == f"{subject}@example.com"
    assert last["name"] == "花子" and last["age"] == 33 and last["location"] == "大阪"
    assert last["personality_traits"] == {"openness": 0.9, "extraversion": 0.0}
    assert last["created_at"] == first["created_at"]
    assert last["updated_at"] > first["updated_at"]
    assert ok(await space.get("/api/users/me", headers=me)) == last

    edges = {"age": 0, "name": "名" * 100, "location": "町" * 100}
    edge = ok(await space.put("/api/users/me", json=edges, headers=me))
    assert {k: edge[k] for k in edges} == edges
    top = {"age": 130, "personality_traits": {n: 1 for n in BIG_FIVE}}
    assert ok(await space.put("/api/users/me", json=top, headers=me))["age"] == 130


@pytest.mark.parametrize(
    "body",
    [
        {"age": 131},
        {"age": -1},
        {"age": "32"},
        {"age": 3.5},
        {"age": True},
        {"name": ""},
        {"name": "名" * 101},
        {"location": "町" * 101},
        {"personality_traits": {"charm": 0.5}},
        {"personality_traits": {"openness": 1.5}},
        {"personality_traits": {"openness": -0.1}},
        {"tags": ["x"]},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"uid": "someone-else"},
    ],
    ids=lambda body: json.dumps(body, ensure_ascii=False)[:40],
)
async def test_a_put_with_an_out_of_range_or_mistyped_field_is_refused_and_stores_nothing(
    space: ApiClient, issuer: Issuer, body: dict[str, Any]
) -> None:
    me = issuer.bearer(someone("bad-put"))
    assert_json_error(
        await space.put("/api/users/me", json=body, headers=me), 422, "validation_error"
    )
    assert ok(await space.get("/api/users/me", headers=me))["created_at"] is None


async def test_concurrent_puts_of_different_traits_all_land(
    space: ApiClient, issuer: Issuer
) -> None:
    me = issuer.bearer(someone("traits"))
    sent = {name: round(0.1 + index / 10, 2) for index, name in enumerate(BIG_FIVE)}
    answers = await asyncio.gather(
        *(
            space.put("/api/users/me", json={"personality_traits": {name: value}}, headers=me)
            for name, value in sent.items()
        )
    )
    assert [a.status_code for a in answers] == [200] * len(sent)
    assert ok(await space.get("/api/users/me", headers=me))["personality_traits"] == sent


async def test_tags_are_kept_once_in_the_order_first_added_up_to_fifty(
    space: ApiClient, issuer: Issuer
) -> None:
    me = issuer.bearer(someone("tags"))
    assert ok(await space.post("/api/users/me/tags", json={"tag": "旅行"}, headers=me)) == {
        "tags": ["旅行"]
    }
    # Surrounding blanks go, and a duplicate changes nothing.
    assert ok(await space.post("/api/users/me/tags", json={"tag": "  旅行 "}, headers=me)) == {
        "tags": ["旅行"]
    }
    longest = "長" * 32
    assert ok(await space.post("/api/users/me/tags", json={"tag": longest}, headers=me))[
        "tags"
    ] == ["旅行", longest]
    for refused in ("長" * 33, "", "   ", None, 5):
        response = await space.post("/api/users/me/tags", json={"tag": refused}, headers=me)
        assert_json_error(response, 422, "validation_error")
    assert_json_error(await space.post("/api/users/me/tags", json={}, headers=me), 422)

    expected = ["旅行", longest] + [f"tag-{i:02d}" for i in range(MAX_TAGS - 2)]
    for tag in expected[2:]:
        ok(await space.post("/api/users/me/tags", json={"tag": tag}, headers=me))
    assert ok(await space.get("/api/users/me", headers=me))["tags"] == expected
    too_many = await space.post("/api/users/me/tags", json={"tag": "one-more"}, headers=me)
    assert_json_error(too_many, 422, "too_many_tags")
    again = await space.post("/api/users/me/tags", json={"tag": "旅行"}, headers=me)
    assert ok(again)["tags"] == expected  # a tag already there is no 51st

    removed = await space.request("DELETE", "/api/users/me/tags", json={"tag": "旅行"}, headers=me)
    assert ok(removed)["tags"] == expected[1:]
    missing = await space.request("DELETE", "/api/users/me/tags", json={"tag": "nope"}, headers=me)
    assert ok(missing)["tags"] == expected[1:]
    no_body = await space.request("DELETE", "/api/users/me/tags", headers=me)
    assert_json_error(no_body, 422)
    assert ok(await space.post("/api/users/me/tags", json={"tag": "one-more"}, headers=me))[
        "tags"
    ] == [*expected[1:], "one-more"]
    assert ok(await space.get("/api/users/me", headers=me))["tags"] == [*expected[1:], "one-more"]


# ------------------------------------------------------------------------------ the profile
async def test_the_profile_takes_the_newest_interview_until_the_record_says_otherwise(
    space: ApiClient, issuer: Issuer
) -> None:
    subject = someone("profile")
    me = issuer.bearer(subject)
    empty = ok(await space.get("/api/profile", headers=me))
    assert empty == {
        "name": "テスト ユーザー",
        "email": f"{subject}@example.com",
        "picture": None,
        "age": None,
        "location": None,
        "personality_traits": {},
        "user_image_path": None,
    }

    await interview(space, me)  # 32, 東京: the older interview
    newer = await interview(
        space,
        me,
        (
            "こんにちは！45歳の男性です。独身です。",
            "大阪に住んでいます。年収は700万円くらいです。",
            *SCRIPT[2:6],
        ),
    )
    photo = ok(await upload_photo(space, newer, me))
    status = ok(await space.get(f"/api/sessions/{newer}/status", headers=me))
    traits = status["user_profile"]["user_personality_traits"]
    assert traits, status["user_profile"]

    profile = ok(await space.get("/api/profile", headers=me))
    assert profile["age"] == 45 and profile["location"] == "大阪"
    assert profile["personality_traits"] == traits
    url = profile["user_image_path"]
    assert urlsplit(url).path == f"/api/sessions/{newer}/photos/user"
    assert {"exp", "sig"} <= set(dict(p.split("=", 1) for p in urlsplit(url).query.split("&")))
    assert await loads_as_image(space, url) == await loads_as_image(space, photo["image_url"])

    record = {
        "age": 50,
        "location": "札幌",
        "name": "花子",
        "personality_traits": {"openness": 0.1},
    }
    ok(await space.put("/api/users/me", json=record, headers=me))
    profile = ok(await space.get("/api/profile", headers=me))
    assert {k: profile[k] for k in record} == record
    assert profile["user_image_path"] is not None


async def test_a_record_age_of_zero_still_wins_over_the_interviews_age(
    space: ApiClient, issuer: Issuer
) -> None:
    me = issuer.bearer(someone("zero"))
    await interview(space, me)  # says 32
    assert ok(await space.put("/api/users/me", json={"age": 0}, headers=me))["age"] == 0
    assert ok(await space.get("/api/profile", headers=me))["age"] == 0


async def test_the_profile_asks_the_record_and_the_newest_interview_at_once(
    space: ApiClient, issuer: Issuer
) -> None:
    me = issuer.bearer(someone("both"))
    await interview(space, me)
    people = space.app.state.services.people
    record, newest = people.record, people.newest_profile
    newest_began = asyncio.Event()

    async def record_once_newest_began(subject: str) -> Any:
        # Asked one after the other, the newest interview would begin only after this.
        await asyncio.wait_for(newest_began.wait(), timeout=5)
        return await record(subject)

    async def newest_noted(subject: str) -> Any:
        newest_began.set()
        return await newest(subject)

    people.record, people.newest_profile = record_once_newest_began, newest_noted
    try:
        profile = ok(await space.get("/api/profile", headers=me))
    finally:
        del people.record, people.newest_profile  # back to the class's methods
    assert profile["age"] == 32


# ------------------------------------------------------------------------------ tokens
SID = "00000000-0000-4000-8000-000000000000"
ME_ROUTES = [
    ("GET", "/api/users/me", None),
    ("PUT", "/api/users/me", {"age": 30}),
    ("DELETE", "/api/users/me", None),
    ("POST", "/api/users/me/tags", {"tag": "x"}),
    ("DELETE", "/api/users/me/tags", {"tag": "x"}),
    ("GET", "/api/profile", None),
    ("GET", "/api/users/me/artifacts", None),
    ("DELETE", f"/api/users/me/artifacts/{SID}", None),
    ("GET", "/api/users/me/sessions", None),
]


@pytest.mark.parametrize("token", ["none", "garbage", "expired", "unknown-issuer"])
async def test_every_route_of_ones_own_space_is_401_without_a_valid_token_and_writes_nothing(
    space: ApiClient, issuer: Issuer, token: str
) -> None:
    now = int(datetime.now(UTC).timestamp())
    headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "expired": issuer.bearer("someone", iat=now - 7200, exp=now - 3600),
        "unknown-issuer": issuer.bearer("someone", iss="https://elsewhere.test"),
    }[token]
    with store_writes(space) as writes:  # sessions, blobs and the user store
        for method, path, body in ME_ROUTES:
            response = await space.request(method, path, json=body, headers=headers)
            code = "auth_required" if token == "none" else "invalid_token"
            assert_json_error(response, 401, code)
            assert response.headers["www-authenticate"].startswith("Bearer"), path
        image = await space.get(f"/api/keepsakes/{'a' * 32}/{SID}/partner", headers=headers)
        if token == "none":  # a signed URL's route: no token is a missing image
            assert_json_error(image, 404, "image_not_found")
        else:
            assert_json_error(image, 401, "invalid_token")
    assert writes == []


# ------------------------------------------------------------------------------ pagination
async def test_250_keepsakes_are_listed_each_exactly_once_newest_first_fifty_at_a_time(
    space: ApiClient, issuer: Issuer
) -> None:
    subject = someone("many")
    me = issuer.bearer(subject)
    real = await journey(space, me)  # one genuine keepsake: the others are copies of it
    services, owner = space.app.state.services, owner_key(subject)
    raw = await read_all(await services.blobs.open(key=keepsake_prefix(owner, real) + DOCUMENT))
    document = json.loads(raw)
    newest = datetime.fromisoformat(document["created_at"])
    at = {real: newest}
    for index in range(249):  # five at each second: ties are ordered by session id
        at[str(uuid.uuid4())] = newest - timedelta(seconds=1 + index // 5)
    gate = asyncio.Semaphore(25)

    async def keep(sid: str) -> None:
        async with gate:
            copy = {**document, "session_id": sid, "created_at": at[sid].isoformat()}
            await services.blobs.put(
                key=keepsake_prefix(owner, sid) + DOCUMENT,
                data=json.dumps(copy, ensure_ascii=False).encode(),
                content_type="application/json",
            )
            await services.users.index_add(
                owner_key=owner, index="keepsakes", item_id=sid, at=at[sid]
            )

    await asyncio.gather(*(keep(sid) for sid in at if sid != real))

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = ok(await space.get("/api/users/me/artifacts", params=params, headers=me))
        pages.append([a["session_id"] for a in page["artifacts"]])
        for artifact in page["artifacts"]:
            assert datetime.fromisoformat(artifact["created_at"]) == at[artifact["session_id"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) <= 5, "more pages than 250 entries make"
    listed = [sid for page in pages for sid in page]
    assert [len(p) for p in pages] == [50] * 5
    assert listed == sorted(at, key=lambda sid: (-at[sid].timestamp(), sid))
    assert listed[0] == real and len(set(listed)) == 250

    hundred = ok(await space.get("/api/users/me/artifacts", params={"limit": 100}, headers=me))
    assert [a["session_id"] for a in hundred["artifacts"]] == listed[:100]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("route", ["artifacts", "sessions"])
async def test_a_bad_limit_or_cursor_is_a_json_422_never_a_500(
    space: ApiClient, issuer: Issuer, route: str
) -> None:
    me = issuer.bearer(someone("cursor"))
    await create(space, me)
    path = f"/api/users/me/{route}"
    for limit in (0, 101, -1, "many"):
        response = await space.get(path, params={"limit": limit}, headers=me)
        assert_json_error(response, 422, "validation_error")
    assert ok(await space.get(path, params={"limit": 100}, headers=me))
    garbage = [
        "garbage",
        "%%%",
        "=",
        "x" * 513,
        _b64(b"[1]"),
        _b64(b'{"a": 1}'),
        _b64(b'"ab"'),
        _b64(b"\xff\xfe\xfd"),
        _b64(b"[[1], 2]"),
        _b64(b"[null, null]"),
        _b64(b"[" * 300),
        _b64(b'[1e999, "x"]'),
        _b64(b'["nan", "x"]'),
    ]
    for cursor in garbage:
        response = await space.get(path, params={"cursor": cursor}, headers=me)
        code = "validation_error" if len(cursor) > 512 else "invalid_cursor"
        assert_json_error(response, 422, code)


async def test_my_sessions_page_over_live_sessions_and_drop_the_gone_ones_as_they_are_met(
    space: ApiClient, issuer: Issuer
) -> None:
    subject = someone("pages")
    me = issuer.bearer(subject)
    users, owner = space.app.state.services.users, owner_key(subject)
    live: list[str] = []
    for _ in range(5):
        live.append(await create(space, me))
        for _ in range(2):  # entries of sessions that are gone, between the live ones
            await users.index_add(
                owner_key=owner, index="sessions", item_id=str(uuid.uuid4()),
                at=datetime.now(UTC),
            )  # fmt: skip
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ok(await space.get("/api/users/me/sessions", params=params, headers=me))
        pages.append([s["session_id"] for s in page["sessions"]])
        for summary in page["sessions"]:
            expires = datetime.fromisoformat(summary["expires_at"])
            updated = datetime.fromisoformat(summary["updated_at"])
            assert expires - updated == timedelta(seconds=space.settings.session_ttl)
            assert summary["interview_status"] == "INCOMPLETE"
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) <= 10
    listed = [sid for page in pages if page for sid in page]
    assert listed == live[::-1]  # newest first, each once
    assert all(len(p) == 2 for p in pages[:2])
    remaining = await users.index_page(owner_key=owner, index="sessions", limit=100)
    assert sorted(e.item_id for e in remaining.entries) == sorted(live)


# ------------------------------------------------------------------------------ other people
async def test_another_person_never_reads_lists_or_deletes_ones_keepsakes_or_sessions(
    space: ApiClient, issuer: Issuer
) -> None:
    owner_subject = someone("owner")
    owner, other = issuer.bearer(owner_subject), issuer.bearer(someone("other"))
    sid = await journey(space, owner)
    ok(await space.put("/api/users/me", json={"age": 41, "location": "那覇"}, headers=owner))
    ok(await space.post("/api/users/me/tags", json={"tag": "秘密"}, headers=owner))
    [artifact] = await artifacts(space, owner)

    assert await artifacts(space, other) == []
    assert await my_sessions(space, other) == []
    theirs = ok(await space.get("/api/users/me", headers=other))
    assert theirs["age"] is None and theirs["location"] is None and theirs["tags"] == []
    profile = ok(await space.get("/api/profile", headers=other))
    assert profile["age"] is None and profile["user_image_path"] is None

    refused = await space.delete(f"/api/users/me/artifacts/{sid}", headers=other)
    assert_json_error(refused, 404, "keepsake_not_found")
    for url in image_urls(artifact).values():
        path = url.split("?")[0]
        assert_json_error(await space.get(path, headers=other), 404, "image_not_found")
        forged = f"{path}?exp=9999999999&sig=" + "A" * 43
        assert_json_error(await space.get(forged, headers=other), 404, "image_not_found")
        assert (await space.get(path, headers=owner)).status_code == 200  # the owner's token

    assert (await space.delete("/api/users/me", headers=other)).status_code == 204
    [still] = await artifacts(space, owner)
    assert unsigned(still) == unsigned(artifact)
    for url in image_urls(still).values():
        await loads_as_image(space, url)
    assert ok(await space.get(f"/api/sessions/{sid}", headers=owner))["session_id"] == sid
    mine = ok(await space.get("/api/users/me", headers=owner))
    assert mine["age"] == 41 and mine["tags"] == ["秘密"]

    ok_delete = await space.delete(f"/api/users/me/artifacts/{sid}", headers=owner)
    assert ok_delete.status_code == 204
    assert await artifacts(space, owner) == []
    for url in image_urls(artifact).values():
        assert (await space.get(url)).status_code == 404
    again = await space.delete(f"/api/users/me/artifacts/{sid}", headers=owner)
    assert_json_error(again, 404, "keepsake_not_found")


# ------------------------------------------------------------------------------ erasure
@pytest.mark.parametrize("stack", STACKS)
async def test_erasing_a_person_leaves_nothing_naming_them_and_touches_nobody_else(
    stack: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    jwks: JwksServer,
    issuer: Issuer,
) -> None:
    gone_subject, kept_subject = someone("erase-me"), someone("keep-me")
    gone, kept = issuer.bearer(gone_subject), issuer.bearer(kept_subject)
    async with running(settings_for(stack, tmp_path, request, jwks)) as api:
        # Every POST with an Idempotency-Key, as the bundled frontend sends them.
        planned = await journey(api, gone, keys=True)
        unfinished = await interview(api, gone, SCRIPT[:2], keys=True)
        ok(await upload_photo(api, unfinished, keyed(gone)))
        claimed = await interview(api, {}, SCRIPT[:3], keys=True)
        ok(await upload_photo(api, claimed, keyed({})))
        ok(await api.post(f"/api/sessions/{claimed}/claim", headers=keyed(gone)))
        ok(await api.put("/api/users/me", json={"age": 29, "location": "福岡"}, headers=gone))
        ok(await api.post("/api/users/me/tags", json={"tag": "消える"}, headers=keyed(gone)))

        theirs = await journey(api, kept, keys=True)
        ok(await api.put("/api/users/me", json={"name": "残る人", "age": 50}, headers=kept))
        ok(await api.post("/api/users/me/tags", json={"tag": "残る"}, headers=keyed(kept)))
        guest = await create(api)
        ok(await upload_photo(api, guest))

        kept_me = ok(await api.get("/api/users/me", headers=kept))
        [kept_artifact] = await artifacts(api, kept)
        kept_sessions = await my_sessions(api, kept)
        kept_images = {
            name: await loads_as_image(api, url) for name, url in image_urls(kept_artifact).items()
        }
        needles = [planned, unfinished, claimed, owner_key(gone_subject), gone_subject]
        before = await stored(api)
        for needle in needles:  # the scan sees each of them while they are there
            assert naming(before, needle), needle
        others = [theirs, guest, owner_key(kept_subject), kept_subject]
        other_names = {needle: naming(before, needle) for needle in others}

        assert (await api.delete("/api/users/me", headers=gone)).status_code == 204
        after = await stored(api)
        left = {needle: naming(after, needle) for needle in needles}
        assert left == {needle: [] for needle in needles}
        # Everyone else's data is as it was: every stored thing naming them is still there.
        for needle, names in other_names.items():
            assert naming(after, needle) == names, needle
            assert all(after[name] == before[name] for name in names), needle

        for sid in (planned, unfinished, claimed):
            assert (await api.get(f"/api/sessions/{sid}", headers=gone)).status_code == 404
        me = ok(await api.get("/api/users/me", headers=gone))
        assert me["age"] is None and me["tags"] == [] and me["created_at"] is None
        assert await artifacts(api, gone) == [] and await my_sessions(api, gone) == []
        assert (await api.delete("/api/users/me", headers=gone)).status_code == 204  # again

        assert ok(await api.get("/api/users/me", headers=kept)) == kept_me
        [still] = await artifacts(api, kept)
        assert unsigned(still) == unsigned(kept_artifact)
        for name, url in image_urls(still).items():
            assert await loads_as_image(api, url) == kept_images[name]
        assert await my_sessions(api, kept) == kept_sessions
        assert (await api.get(f"/api/sessions/{guest}")).status_code == 200
        assert (await api.get(f"/api/sessions/{guest}/photos/user")).status_code == 200


@pytest.mark.parametrize("stack", STACKS)
async def test_erasing_a_person_also_removes_the_photos_of_their_expired_sessions(
    stack: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    jwks: JwksServer,
    issuer: Issuer,
) -> None:
    """A session expires long before a person may ask to be forgotten: its photo (in the
    bucket or the data directory) must go with everything else."""
    subject = someone("erase-later")
    me = issuer.bearer(subject)
    async with running(settings_for(stack, tmp_path, request, jwks, session_ttl=2)) as api:
        sid = await create(api, me)
        ok(await upload_photo(api, sid, me))
        assert naming(await stored(api), sid)
        await eventually(lambda: session_gone(api, sid, me), within=20, what="the session expiring")
        assert (await api.delete("/api/users/me", headers=me)).status_code == 204
        after = await stored(api)
        assert naming(after, sid) == [] and naming(after, subject) == []


@pytest.mark.parametrize("stack", STACKS)
async def test_listing_an_expired_session_out_of_the_index_takes_its_photo_with_it(
    stack: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    jwks: JwksServer,
    issuer: Issuer,
) -> None:
    """The index is the only way to find an expired session's leftovers: the listing that
    drops its entry removes them, so a later erasure has nothing it cannot find."""
    subject = someone("listed-out")
    me = issuer.bearer(subject)
    async with running(settings_for(stack, tmp_path, request, jwks, session_ttl=2)) as api:
        sid = await create(api, me)
        ok(await upload_photo(api, sid, me))
        await eventually(lambda: session_gone(api, sid, me), within=20, what="the session expiring")
        assert ok(await api.get("/api/users/me/sessions", headers=me))["sessions"] == []
        assert naming(await stored(api), sid) == []
