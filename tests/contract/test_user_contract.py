"""The UserRepository contract (app/repositories/users.py), run unchanged against every
adapter: each statement of the port's docstring is proved here on memory, file, fakeredis and
a real Redis."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.repositories.base import InvalidId, StoreUnavailable, new_session_id, utcnow
from app.repositories.users import (
    INDEX_NAMES,
    MAX_TAGS,
    TooManyTags,
    UserRepository,
    owner_key,
)
from tests.support.polling import eventually
from tests.support.stores import StoreSpec, build_user_repo

JAPANESE = "こんにちは、ヘーラーです。家族の未来を一緒に描きましょう 👨‍👩‍👧"
HEX32 = re.compile(r"[0-9a-f]{32}")  # used with fullmatch: no trailing newline slips through
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

UserFactory = Callable[[], Awaitable[UserRepository]]


# ------------------------------------------------------------------ fixtures
@pytest.fixture
async def make_users(session_spec: StoreSpec) -> AsyncIterator[UserFactory]:
    """Repositories over one store; all closed afterwards. The memory store is the object
    itself (one process, one instance), so there every call gives the same repository."""
    built: list[UserRepository] = []

    async def make() -> UserRepository:
        if session_spec.kind == "memory" and built:
            return built[0]
        repo = await build_user_repo(session_spec)
        built.append(repo)
        return repo

    yield make
    for repo in built:
        await repo.aclose()


@pytest.fixture
async def users(make_users: UserFactory) -> UserRepository:
    return await make_users()


def person(name: str = "person") -> str:
    return owner_key(f"{name}-{uuid.uuid4()}")


async def owners(users: UserRepository) -> list[str]:
    return [key async for key in users.iter_owners()]


async def _after(moment: datetime) -> None:
    """Let the clock move past `moment` (and file-system timestamp granularity)."""
    later = moment + timedelta(milliseconds=20)

    async def passed() -> bool:
        return utcnow() > later

    await eventually(passed, within=2, what="the clock moving on")


def stamp(record: dict[str, Any], name: str) -> datetime:
    value = record[name]
    assert isinstance(value, str), f"{name} is not an ISO 8601 string: {value!r}"
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{name} has no time zone: {value!r}"
    return parsed


# ------------------------------------------------------------------ owner keys
def test_an_owner_key_is_32_lower_case_hex_characters_and_stable() -> None:
    key = owner_key("some sub")
    assert HEX32.fullmatch(key), key
    assert owner_key("some sub") == key
    assert key != "some sub"


def test_different_subjects_get_different_owner_keys() -> None:
    subjects = ["some sub", "some sub ", "Some sub", "other", "", "auth0|1", "auth0|2"]
    assert len({owner_key(s) for s in subjects}) == len(subjects)


HOSTILE_SUBJECTS = {
    "dot-dot": "../../etc/passwd",
    "nul": "abc\x00def",
    "ten-kb": "x" * 10_240,
    "newline": "sub\n",
    "glob": "{*}:*",
    "lone-surrogate": "\ud800",  # what JSON's "\ud800" escape decodes to in Python
}


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS.values(), ids=list(HOSTILE_SUBJECTS))
def test_a_hostile_subject_still_gets_a_32_hex_key(subject: str) -> None:
    key = owner_key(subject)
    assert HEX32.fullmatch(key), key
    assert owner_key(subject) == key


async def test_keys_of_hostile_subjects_are_stored_as_themselves(users: UserRepository) -> None:
    subjects = [s for name, s in HOSTILE_SUBJECTS.items() if name != "lone-surrogate"]
    keys = [owner_key(s) for s in subjects]
    for n, key in enumerate(keys):
        await users.update(owner_key=key, fields={"n": n})
    assert sorted(await owners(users)) == sorted(keys)
    for n, key in enumerate(keys):
        assert (await users.get(owner_key=key) or {}).get("n") == n


NON_KEYS = {
    "dot-dot": "../x",
    "upper-case": "A" * 32,
    "31-hex": "a" * 31,
    "33-hex": "a" * 33,
    "not-hex": "g" * 32,
    "empty": "",
    "trailing-newline": "0" * 32 + "\n",
    "hash-tag-escape": "0" * 30 + "}{",
    "a-raw-subject": "some sub",
}


def _every_method(users: UserRepository, key: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "get": lambda: users.get(owner_key=key),
        "update": lambda: users.update(owner_key=key, fields={"a": 1}),
        "restore": lambda: users.restore(owner_key=key, record=dict(RESTORED)),
        "add_tag": lambda: users.add_tag(owner_key=key, tag="t"),
        "remove_tag": lambda: users.remove_tag(owner_key=key, tag="t"),
        "index_add": lambda: users.index_add(
            owner_key=key, index="sessions", item_id=new_session_id(), at=T0
        ),
        "index_remove": lambda: users.index_remove(owner_key=key, index="sessions", item_id="x"),
        "index_page": lambda: users.index_page(owner_key=key, index="keepsakes", limit=10),
        "delete": lambda: users.delete(owner_key=key),
    }


async def _footprint(spec: StoreSpec, users: UserRepository) -> list[str]:
    """Everything the store holds: its owners, and for the file store every path near it
    (a key that escaped the root would show up here)."""
    found = [f"owner:{key}" for key in await owners(users)]
    if spec.kind == "file":
        near = Path(spec.params["root"]).parent
        found += [f"path:{p.relative_to(near)}" for p in near.rglob("*")]
    if spec.kind in ("fakeredis", "redis"):
        found += [f"key:{key!r}" for key in await _redis_keys(spec)]
    return sorted(found)


async def _redis_keys(spec: StoreSpec) -> list[bytes]:
    """Every key of the spec's namespace (all of a fake server's: it is this test's alone)."""
    import fakeredis
    import redis.asyncio

    from tests.support.redis_support import fake_server, namespace_keys

    if spec.kind == "fakeredis":
        fake = fakeredis.FakeAsyncRedis(server=fake_server(spec.params["server_id"]))
        try:
            return [key async for key in fake.scan_iter(count=500)]
        finally:
            await fake.aclose()
    real = redis.asyncio.Redis.from_url(spec.params["url"])
    try:
        return await namespace_keys(real, spec.params["namespace"])
    finally:
        await real.aclose()


@pytest.mark.parametrize("bad", NON_KEYS.values(), ids=list(NON_KEYS))
async def test_every_method_refuses_a_non_key_and_stores_nothing(
    session_spec: StoreSpec, users: UserRepository, bad: str
) -> None:
    before = await _footprint(session_spec, users)
    for name, call in _every_method(users, bad).items():
        with pytest.raises(InvalidId):
            await call()
            pytest.fail(f"{name} accepted {bad!r}")
    assert await _footprint(session_spec, users) == before


async def _unreachable_users(spec: StoreSpec, tmp_path: Path) -> UserRepository:
    """A user repository whose store fails any I/O."""
    if spec.kind == "file":
        place = tmp_path / "gone"
        repo = await build_user_repo(StoreSpec("file", {"root": str(place / "sessions")}))
        shutil.rmtree(place)
        place.write_text("a file where the store's directory was")
        return repo
    if spec.kind == "fakeredis":
        from tests.support.redis_support import fake_server

        repo = await build_user_repo(spec)
        fake_server(spec.params["server_id"]).connected = False
        return repo
    params = {"url": "redis://127.0.0.1:1/0", "namespace": spec.params["namespace"]}
    return await build_user_repo(StoreSpec("redis", params))


@pytest.mark.parametrize("session_spec", ["file", "fakeredis", "redis"], indirect=True)
async def test_a_non_key_is_refused_before_any_io(session_spec: StoreSpec, tmp_path: Path) -> None:
    repo = await _unreachable_users(session_spec, tmp_path)
    try:
        for bad in ("../x", "A" * 32, "a" * 31):
            for name, call in _every_method(repo, bad).items():
                with pytest.raises(InvalidId):
                    await call()
                    pytest.fail(f"{name} accepted {bad!r}")
        with pytest.raises(StoreUnavailable):  # a good key does reach the (failing) store
            await repo.get(owner_key=person())
    finally:
        await repo.aclose()


# ------------------------------------------------------------------ records
async def test_an_unknown_person_has_no_record(users: UserRepository) -> None:
    await users.update(owner_key=person("known"), fields={"a": 1})
    assert await users.get(owner_key=person("unknown")) is None


async def test_the_first_update_creates_the_record_with_timestamps_and_no_tags(
    users: UserRepository,
) -> None:
    key = person()
    returned = await users.update(owner_key=key, fields={"nickname": "はなこ"})
    record = await users.get(owner_key=key)
    assert record is not None
    assert record["nickname"] == "はなこ"
    assert record["tags"] == []
    created, updated = stamp(record, "created_at"), stamp(record, "updated_at")
    assert created <= updated
    assert abs(utcnow() - created) < timedelta(minutes=1)
    assert set(record) == {"nickname", "tags", "created_at", "updated_at"}
    assert returned == record


async def test_a_later_update_keeps_created_at_and_advances_updated_at(
    users: UserRepository,
) -> None:
    key = person()
    first = await users.update(owner_key=key, fields={"age": 30})
    await _after(stamp(first, "updated_at"))
    await users.update(owner_key=key, fields={"age": 31})
    second = await users.get(owner_key=key)
    assert second is not None
    assert second["created_at"] == first["created_at"]
    assert stamp(second, "updated_at") > stamp(first, "updated_at")
    await _after(stamp(second, "updated_at"))
    await users.update(owner_key=key, fields={"age": 31})  # the same value is a change too
    third = await users.get(owner_key=key)
    assert third is not None
    assert third["created_at"] == first["created_at"]
    assert stamp(third, "updated_at") > stamp(second, "updated_at")


async def test_update_merges_top_level_fields_and_none_deletes_one(
    users: UserRepository,
) -> None:
    key, other = person(), person("other")
    await users.update(owner_key=other, fields={"age": 99})
    await users.update(
        owner_key=key, fields={"age": 30, "gender": "女性", "family": {"kids": 1, "pets": 2}}
    )
    await users.update(owner_key=key, fields={"age": 31, "gender": None, "family": {"kids": 2}})
    await users.update(owner_key=key, fields={"never_there": None})
    record = await users.get(owner_key=key)
    assert record is not None
    fields = {k: v for k, v in record.items() if k not in ("tags", "created_at", "updated_at")}
    assert fields == {"age": 31, "family": {"kids": 2}}  # top level: family is replaced whole
    assert (await users.get(owner_key=other) or {}).get("age") == 99


EXACT_VALUES: dict[str, Any] = {
    "japanese": JAPANESE,
    "max_signed": 2**63 - 1,
    "min_signed": -(2**63),
    "max_unsigned": 2**64 - 1,
    "float": 0.1 + 0.2,
    "tiny": 5e-324,
    "negative_zero_free": -1.5e300,
    "whole_float": 2.0,
    "nested": {"list": [True, False, None, 1.5, "文字"], "empty": {}, "deep": {"a": {"b": []}}},
    "empty_string": "",
    "quote_and_braces": '"}{\\',
}


async def test_values_round_trip_exactly(make_users: UserFactory) -> None:
    users, again = await make_users(), await make_users()
    key = person()
    await users.update(owner_key=key, fields=EXACT_VALUES)
    for repo in (users, again):
        record = await repo.get(owner_key=key)
        assert record is not None
        assert {k: record[k] for k in EXACT_VALUES} == EXACT_VALUES
        assert type(record["max_unsigned"]) is int and type(record["whole_float"]) is float


NOT_JSON = {
    "nan": float("nan"),
    "inf": float("inf"),
    "datetime": datetime.now(UTC),
    "int-over-64-bits": 2**64,
    "int-under-64-bits": -(2**63) - 1,
    "int-key": {1: "x"},
    "set": {"a"},
}


@pytest.mark.parametrize("bad", NOT_JSON.values(), ids=list(NOT_JSON))
async def test_values_that_are_not_json_are_refused_and_change_nothing(
    users: UserRepository, bad: Any
) -> None:
    known, unknown = person("known"), person("unknown")
    await users.update(owner_key=known, fields={"ok": 1})
    before = await users.get(owner_key=known)
    with pytest.raises(ValueError):
        await users.update(owner_key=known, fields={"ok": 2, "bad": {"deep": [bad]}})
    with pytest.raises(ValueError):
        await users.update(owner_key=unknown, fields={"ok": 2, "bad": bad})
    assert await users.get(owner_key=known) == before
    assert await users.get(owner_key=unknown) is None
    assert await owners(users) == [known]


KEPT_FIELDS = {
    "created_at": {"created_at": "1999-01-01T00:00:00+00:00"},
    "updated_at": {"updated_at": "1999-01-01T00:00:00+00:00"},
    "tags": {"tags": ["dup", "dup", *(f"t{i}" for i in range(MAX_TAGS + 5))]},
    "tags-none": {"tags": None},
    "created_at-none": {"created_at": None},
    "beside-a-good-field": {"age": 30, "updated_at": None},
}


@pytest.mark.parametrize("fields", KEPT_FIELDS.values(), ids=list(KEPT_FIELDS))
async def test_update_of_a_field_the_store_keeps_raises_value_error_and_changes_nothing(
    users: UserRepository, fields: dict[str, Any]
) -> None:
    key, unknown = person(), person("unknown")
    await users.add_tag(owner_key=key, tag="a")
    before = await users.get(owner_key=key)
    with pytest.raises(ValueError):
        await users.update(owner_key=key, fields=fields)
    with pytest.raises(ValueError):
        await users.update(owner_key=unknown, fields=fields)
    assert await users.get(owner_key=key) == before
    assert await users.get(owner_key=unknown) is None


# ------------------------------------------------------------------ tags
async def test_tags_keep_the_order_of_first_addition_without_duplicates(
    users: UserRepository,
) -> None:
    key = person()
    order = ["zeta", "alpha", "家族", "mid", "alpha", "zeta", "beta", "家族"]
    returned: list[str] = []
    for tag in order:
        returned = await users.add_tag(owner_key=key, tag=tag)
    expected = ["zeta", "alpha", "家族", "mid", "beta"]
    assert returned == expected
    record = await users.get(owner_key=key)
    assert record is not None
    assert record["tags"] == expected
    assert stamp(record, "created_at") <= stamp(record, "updated_at")  # a tag makes a record


async def test_remove_tag_drops_one_and_removing_an_absent_one_changes_nothing(
    users: UserRepository,
) -> None:
    key = person()
    for tag in ("a", "b", "c"):
        await users.add_tag(owner_key=key, tag=tag)
    assert await users.remove_tag(owner_key=key, tag="b") == ["a", "c"]
    before = await users.get(owner_key=key)
    await _after(stamp(before or {}, "updated_at"))
    assert await users.remove_tag(owner_key=key, tag="b") == ["a", "c"]
    assert await users.remove_tag(owner_key=key, tag="never") == ["a", "c"]
    assert await users.get(owner_key=key) == before  # not even updated_at moved
    assert await users.add_tag(owner_key=key, tag="b") == ["a", "c", "b"]  # re-added: last


async def test_removing_a_tag_of_an_unknown_person_stores_nothing(
    users: UserRepository,
) -> None:
    key = person()
    assert await users.remove_tag(owner_key=key, tag="x") == []
    assert await users.get(owner_key=key) is None
    assert await owners(users) == []
    assert await users.delete(owner_key=key) is False


async def test_adding_a_tag_that_is_already_there_changes_nothing(
    users: UserRepository,
) -> None:
    key = person()
    await users.add_tag(owner_key=key, tag="a")
    before = await users.get(owner_key=key)
    await _after(stamp(before or {}, "updated_at"))
    assert await users.add_tag(owner_key=key, tag="a") == ["a"]
    assert await users.get(owner_key=key) == before


async def test_the_51st_tag_is_refused_and_not_stored_but_a_listed_one_is_fine(
    users: UserRepository,
) -> None:
    assert MAX_TAGS == 50
    key = person()
    tags = [f"tag-{i:02d}" for i in range(MAX_TAGS)]
    for tag in tags:
        await users.add_tag(owner_key=key, tag=tag)
    with pytest.raises(TooManyTags):
        await users.add_tag(owner_key=key, tag="one-too-many")
    assert (await users.get(owner_key=key) or {}).get("tags") == tags
    assert await users.add_tag(owner_key=key, tag="tag-07") == tags  # listed: no new tag
    await users.remove_tag(owner_key=key, tag="tag-00")
    assert await users.add_tag(owner_key=key, tag="one-too-many") == [*tags[1:], "one-too-many"]


async def test_tags_survive_an_update_of_other_fields(users: UserRepository) -> None:
    key = person()
    await users.add_tag(owner_key=key, tag="旅行")
    await users.add_tag(owner_key=key, tag="料理")
    await users.update(owner_key=key, fields={"age": 30})
    await users.update(owner_key=key, fields={"age": None, "city": "東京"})
    record = await users.get(owner_key=key)
    assert record is not None
    assert record["tags"] == ["旅行", "料理"]
    assert record["city"] == "東京" and "age" not in record


# ------------------------------------------------------------------ concurrency
async def test_concurrent_updates_and_tags_all_land(make_users: UserFactory) -> None:
    first, second = await make_users(), await make_users()  # one store (memory: one object)
    key = person()
    await first.update(owner_key=key, fields={"seed": True})
    await asyncio.gather(
        *(
            (first if n % 2 else second).update(owner_key=key, fields={f"field_{n}": n})
            for n in range(20)
        ),
        *((second if n % 2 else first).add_tag(owner_key=key, tag=f"tag-{n}") for n in range(20)),
    )
    record = await first.get(owner_key=key)
    assert record is not None
    assert {f"field_{n}": n for n in range(20)}.items() <= record.items()
    assert record["seed"] is True
    assert sorted(record["tags"]) == sorted(f"tag-{n}" for n in range(20))
    assert await second.get(owner_key=key) == record


async def test_concurrent_tags_never_pass_the_limit(make_users: UserFactory) -> None:
    first, second = await make_users(), await make_users()
    key = person()
    results = await asyncio.gather(
        *(
            (first if n % 2 else second).add_tag(owner_key=key, tag=f"tag-{n}")
            for n in range(MAX_TAGS + 10)
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 10 and all(isinstance(r, TooManyTags) for r in refused), refused
    tags = (await first.get(owner_key=key) or {}).get("tags", [])
    assert len(tags) == MAX_TAGS == len(set(tags))


# ------------------------------------------------------------------ indexes
async def page_ids(users: UserRepository, key: str, index: str, limit: int = 100) -> list[str]:
    page = await users.index_page(owner_key=key, index=index, limit=limit)  # type: ignore[arg-type]
    return [entry.item_id for entry in page.entries]


async def test_index_add_of_a_listed_item_keeps_its_first_time(users: UserRepository) -> None:
    key, sid = person(), new_session_id()
    first = T0 + timedelta(microseconds=123_457)
    await users.index_add(owner_key=key, index="sessions", item_id=sid, at=first)
    await users.index_add(owner_key=key, index="sessions", item_id=sid, at=T0 + timedelta(days=1))
    await users.index_add(owner_key=key, index="sessions", item_id=sid, at=T0 - timedelta(days=1))
    page = await users.index_page(owner_key=key, index="sessions", limit=10)
    assert [(e.item_id, e.at) for e in page.entries] == [(sid, first)]
    assert page.next_cursor is None


async def test_index_page_lists_newest_first_with_ties_broken_by_item_id(
    users: UserRepository,
) -> None:
    key = person()
    entries = {
        "tie-b1": T0,
        "tie-a2": T0,
        "tie-c3": T0,
        "newest": T0 + timedelta(hours=1),
        "oldest": T0 - timedelta(days=400),
        "middle": T0 + timedelta(seconds=1),
    }
    for item_id, at in entries.items():
        await users.index_add(owner_key=key, index="keepsakes", item_id=item_id, at=at)
    page = await users.index_page(owner_key=key, index="keepsakes", limit=10)
    assert [(e.item_id, e.at) for e in page.entries] == [
        ("newest", T0 + timedelta(hours=1)),
        ("middle", T0 + timedelta(seconds=1)),
        ("tie-a2", T0),
        ("tie-b1", T0),
        ("tie-c3", T0),
        ("oldest", T0 - timedelta(days=400)),
    ]
    assert page.next_cursor is None
    two = await users.index_page(owner_key=key, index="keepsakes", limit=2)
    assert [e.item_id for e in two.entries] == ["newest", "middle"] and two.next_cursor


async def test_the_cursor_walks_every_entry_exactly_once(users: UserRepository) -> None:
    key = person()
    shuffled = [(new_session_id(), T0 + timedelta(seconds=n // 3)) for n in range(250)]
    random.Random(7).shuffle(shuffled)  # three to a second: ties straddle page boundaries
    for sid, at in shuffled:
        await users.index_add(owner_key=key, index="sessions", item_id=sid, at=at)
    expected = [sid for sid, at in sorted(shuffled, key=lambda e: (-e[1].timestamp(), e[0]))]
    walked: list[list[str]] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    while True:
        page = await users.index_page(owner_key=key, index="sessions", limit=50, cursor=cursor)
        walked.append([e.item_id for e in page.entries])
        cursors.append(page.next_cursor)
        cursor = page.next_cursor
        if cursor is None or len(walked) > 6:
            break
    assert [len(p) for p in walked] == [50] * 5
    assert [i for p in walked for i in p] == expected
    assert all(isinstance(c, str) and c for c in cursors[:4]) and cursors[4] is None


async def test_a_page_after_a_removal_skips_the_removed_entry(users: UserRepository) -> None:
    key = person()
    ids = [f"item-{n}" for n in range(6)]  # item-0 newest
    for n, item_id in enumerate(ids):
        await users.index_add(
            owner_key=key, index="sessions", item_id=item_id, at=T0 - timedelta(minutes=n)
        )
    first = await users.index_page(owner_key=key, index="sessions", limit=2)
    assert [e.item_id for e in first.entries] == ["item-0", "item-1"]
    assert await users.index_remove(owner_key=key, index="sessions", item_id="item-3") is True
    assert await users.index_remove(owner_key=key, index="sessions", item_id="item-3") is False
    assert await users.index_remove(owner_key=key, index="sessions", item_id="item-1") is True
    second = await users.index_page(
        owner_key=key, index="sessions", limit=2, cursor=first.next_cursor
    )
    assert [e.item_id for e in second.entries] == ["item-2", "item-4"]  # the cursor's gone too
    third = await users.index_page(
        owner_key=key, index="sessions", limit=2, cursor=second.next_cursor
    )
    assert [e.item_id for e in third.entries] == ["item-5"] and third.next_cursor is None
    assert await page_ids(users, key, "sessions") == ["item-0", "item-2", "item-4", "item-5"]


async def test_an_empty_index_gives_an_empty_page_and_no_cursor(users: UserRepository) -> None:
    key = person()
    for index in INDEX_NAMES:
        page = await users.index_page(owner_key=key, index=index, limit=5)
        assert page.entries == [] and page.next_cursor is None
    await users.update(owner_key=key, fields={"a": 1})  # a record, still no entries
    page = await users.index_page(owner_key=key, index="sessions", limit=1)
    assert page.entries == [] and page.next_cursor is None


GARBAGE_CURSORS = {
    "words": "not a cursor",
    "empty": "",
    "bad-base64": "!!!!",
    "json-number": "NQ",  # base64 of "5"
    "json-list-of-one": "WzFd",  # base64 of "[1]"
    "json-null-time": "W251bGwsIngiXQ",  # base64 of '[null,"x"]'
    "non-ascii": "カーソル",
    "infinite-time": "WzFlOTk5LCJ4Il0",  # base64 of '[1e999,"x"]'
    "nan-time": "WyJuYW4iLCJ4Il0",  # base64 of '["nan","x"]'
    "number-id": "WzEsMl0",  # base64 of '[1,2]'
}


@pytest.mark.parametrize("cursor", GARBAGE_CURSORS.values(), ids=list(GARBAGE_CURSORS))
async def test_a_garbage_cursor_raises_invalid_id(users: UserRepository, cursor: str) -> None:
    key = person()
    await users.index_add(owner_key=key, index="sessions", item_id="a", at=T0)
    with pytest.raises(InvalidId):
        await users.index_page(owner_key=key, index="sessions", limit=1, cursor=cursor)
    with pytest.raises(InvalidId):  # an empty index reads the cursor all the same
        await users.index_page(owner_key=key, index="keepsakes", limit=1, cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_below_one_raises_value_error(users: UserRepository, limit: int) -> None:
    key = person()
    await users.index_add(owner_key=key, index="sessions", item_id="a", at=T0)
    with pytest.raises(ValueError):
        await users.index_page(owner_key=key, index="sessions", limit=limit)


async def test_the_sessions_and_keepsakes_indexes_are_separate(users: UserRepository) -> None:
    key = person()
    assert INDEX_NAMES == ("sessions", "keepsakes")
    await users.index_add(owner_key=key, index="sessions", item_id="s-1", at=T0)
    await users.index_add(owner_key=key, index="keepsakes", item_id="k-1", at=T0)
    await users.index_add(owner_key=key, index="keepsakes", item_id="shared", at=T0)
    await users.index_add(owner_key=key, index="sessions", item_id="shared", at=T0)
    assert await page_ids(users, key, "sessions") == ["s-1", "shared"]
    assert await page_ids(users, key, "keepsakes") == ["k-1", "shared"]
    assert await users.index_remove(owner_key=key, index="keepsakes", item_id="s-1") is False
    assert await users.index_remove(owner_key=key, index="keepsakes", item_id="shared") is True
    assert await page_ids(users, key, "sessions") == ["s-1", "shared"]
    assert await page_ids(users, key, "keepsakes") == ["k-1"]


async def test_each_person_has_their_own_indexes(users: UserRepository) -> None:
    alice, bob = person("alice"), person("bob")
    await users.index_add(owner_key=alice, index="sessions", item_id="a", at=T0)
    await users.index_add(owner_key=bob, index="sessions", item_id="b", at=T0)
    assert await users.index_remove(owner_key=bob, index="sessions", item_id="a") is False
    assert await page_ids(users, alice, "sessions") == ["a"]
    assert await page_ids(users, bob, "sessions") == ["b"]


@pytest.mark.parametrize("index", ["../sessions", "Sessions", "session", "", "tags", "record"])
async def test_an_unknown_index_name_raises_invalid_id(
    session_spec: StoreSpec, users: UserRepository, index: str
) -> None:
    key = person()
    before = await _footprint(session_spec, users)
    with pytest.raises(InvalidId):
        await users.index_add(owner_key=key, index=index, item_id="a", at=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidId):
        await users.index_remove(owner_key=key, index=index, item_id="a")  # type: ignore[arg-type]
    with pytest.raises(InvalidId):
        await users.index_page(owner_key=key, index=index, limit=1)  # type: ignore[arg-type]
    assert await _footprint(session_spec, users) == before


async def test_removing_an_unlisted_entry_of_an_unknown_person_stores_nothing(
    users: UserRepository,
) -> None:
    key = person()
    assert await users.index_remove(owner_key=key, index="sessions", item_id="x") is False
    assert await owners(users) == []
    assert await users.delete(owner_key=key) is False


# ------------------------------------------------------------------ restore
RESTORED: dict[str, Any] = {
    "tags": ["zeta", "alpha", "家族"],
    "created_at": "2024-01-02T03:04:05.678901+00:00",
    "updated_at": "2024-06-07T08:09:10+00:00",
    "nickname": "はなこ",
    **EXACT_VALUES,
}


async def test_restore_writes_a_record_exactly_as_given(make_users: UserFactory) -> None:
    users, again = await make_users(), await make_users()
    key = person()
    assert await users.restore(owner_key=key, record=RESTORED) is True
    assert await users.get(owner_key=key) == RESTORED
    assert await again.get(owner_key=key) == RESTORED
    assert await owners(users) == [key]


async def test_restore_keeps_fields_whatever_their_names(users: UserRepository) -> None:
    # "--" once separated the fields from the tags in the Redis script's arguments.
    record = {**RESTORED, "--": "dashes", "after": ["--"]}
    key = person()
    assert await users.restore(owner_key=key, record=record) is True
    assert await users.get(owner_key=key) == record


async def test_restore_where_there_is_a_record_returns_false_and_writes_nothing(
    users: UserRepository,
) -> None:
    with_fields, with_a_tag = person("fields"), person("tag")
    await users.update(owner_key=with_fields, fields={"age": 30})
    await users.add_tag(owner_key=with_a_tag, tag="mine")
    for key in (with_fields, with_a_tag):
        before = await users.get(owner_key=key)
        assert await users.restore(owner_key=key, record=RESTORED) is False
        assert await users.get(owner_key=key) == before
    restored = person("restored")
    assert await users.restore(owner_key=restored, record=RESTORED) is True
    assert await users.restore(owner_key=restored, record={**RESTORED, "tags": []}) is False
    assert await users.get(owner_key=restored) == RESTORED


async def test_restore_beside_index_entries_keeps_them(users: UserRepository) -> None:
    key = person()
    await users.index_add(owner_key=key, index="keepsakes", item_id="k", at=T0)
    assert await users.restore(owner_key=key, record=RESTORED) is True
    assert await users.get(owner_key=key) == RESTORED
    assert await page_ids(users, key, "keepsakes") == ["k"]


@pytest.mark.parametrize("bad", NOT_JSON.values(), ids=list(NOT_JSON))
async def test_restore_of_a_value_that_is_not_json_raises_value_error_and_writes_nothing(
    users: UserRepository, bad: Any
) -> None:
    key = person()
    with pytest.raises(ValueError):
        await users.restore(owner_key=key, record={**RESTORED, "bad": [bad]})
    assert await users.get(owner_key=key) is None
    assert await owners(users) == []


async def test_a_restored_record_then_changes_like_any_other(users: UserRepository) -> None:
    key = person()
    await users.restore(owner_key=key, record=RESTORED)
    assert await users.add_tag(owner_key=key, tag="new") == [*RESTORED["tags"], "new"]
    assert await users.remove_tag(owner_key=key, tag="alpha") == ["zeta", "家族", "new"]
    record = await users.update(owner_key=key, fields={"nickname": None, "age": 30})
    assert record["created_at"] == RESTORED["created_at"]
    assert stamp(record, "updated_at") > stamp(RESTORED, "updated_at")
    assert record["age"] == 30 and "nickname" not in record
    assert record["tags"] == ["zeta", "家族", "new"]


# ------------------------------------------------------------------ delete, iter_owners
async def test_delete_removes_the_record_the_tags_and_both_indexes_of_one_person(
    users: UserRepository,
) -> None:
    key, other = person(), person("other")
    for who in (key, other):
        await users.update(owner_key=who, fields={"name": who})
        await users.add_tag(owner_key=who, tag="t")
        await users.index_add(owner_key=who, index="sessions", item_id="s", at=T0)
        await users.index_add(owner_key=who, index="keepsakes", item_id="k", at=T0)
    other_before = await users.get(owner_key=other)
    assert await users.delete(owner_key=key) is True
    assert await users.get(owner_key=key) is None
    for index in INDEX_NAMES:
        page = await users.index_page(owner_key=key, index=index, limit=10)
        assert page.entries == [] and page.next_cursor is None
    assert await users.delete(owner_key=key) is False
    assert await users.get(owner_key=other) == other_before
    assert await page_ids(users, other, "sessions") == ["s"]
    assert await page_ids(users, other, "keepsakes") == ["k"]
    assert await owners(users) == [other]
    # a new start after delete: no old tags, a new created_at
    again = await users.update(owner_key=key, fields={"fresh": True})
    assert again["tags"] == [] and "name" not in again


@pytest.mark.parametrize("part", ["record", "tags", "sessions", "keepsakes"])
async def test_delete_of_a_person_with_only_one_part_finds_it(
    users: UserRepository, part: str
) -> None:
    key = person()
    if part == "record":
        await users.update(owner_key=key, fields={"a": 1})
    elif part == "tags":
        await users.add_tag(owner_key=key, tag="t")
    else:
        await users.index_add(owner_key=key, index=part, item_id="x", at=T0)  # type: ignore[arg-type]
    assert await owners(users) == [key]
    assert await users.delete(owner_key=key) is True
    assert await owners(users) == []
    assert await users.get(owner_key=key) is None
    assert await users.delete(owner_key=key) is False


async def test_iter_owners_streams_everyone_with_anything_stored_exactly_once(
    make_users: UserFactory,
) -> None:
    users, other_view = await make_users(), await make_users()
    everything = [person("everything") for _ in range(30)]  # every part: several keys each
    only_record, only_tag = person("record"), person("tag")
    only_session, only_keepsake = person("session"), person("keepsake")
    deleted = person("deleted")
    for key in [*everything, deleted]:
        await users.update(owner_key=key, fields={"a": 1})
        await users.add_tag(owner_key=key, tag="t")
        for index in INDEX_NAMES:
            await users.index_add(owner_key=key, index=index, item_id="x", at=T0)
    await users.update(owner_key=only_record, fields={"a": 1})
    await users.add_tag(owner_key=only_tag, tag="t")
    await users.index_add(owner_key=only_session, index="sessions", item_id="x", at=T0)
    await users.index_add(owner_key=only_keepsake, index="keepsakes", item_id="x", at=T0)
    await users.delete(owner_key=deleted)
    expected = sorted([*everything, only_record, only_tag, only_session, only_keepsake])
    for view in (users, other_view):
        seen = await owners(view)
        assert len(seen) == len(set(seen)), "an owner was streamed twice"
        assert sorted(seen) == expected


async def test_a_person_whose_only_entry_was_removed_is_no_longer_streamed(
    users: UserRepository,
) -> None:
    kept, emptied = person("kept"), person("emptied")
    await users.index_add(owner_key=kept, index="sessions", item_id="x", at=T0)
    await users.index_add(owner_key=emptied, index="keepsakes", item_id="x", at=T0)
    assert await users.index_remove(owner_key=emptied, index="keepsakes", item_id="x") is True
    assert await owners(users) == [kept]


# ------------------------------------------------------------------ health
async def test_ping_succeeds_on_a_healthy_store(users: UserRepository) -> None:
    # answers, and raises nothing
    assert await users.ping() is None  # type: ignore[func-returns-value]


async def test_durability_names_one_of_the_documented_answers(
    session_spec: StoreSpec, users: UserRepository
) -> None:
    answer = await users.durability()
    assert answer in {"disk", "aof", "rdb", "none", "unknown"}
    if session_spec.kind == "memory":
        assert answer == "none"
    if session_spec.kind == "file":
        assert answer == "disk"
