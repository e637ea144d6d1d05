"""One person's record changed from two server processes at once (one Redis namespace, one
data directory for the blobs): 20 partial PUTs of /api/users/me, each setting one field (a
name, an age, a location, or one of the five Big Five traits), and 20 tag adds with distinct
tags, all in flight together and spread over both processes. Every field and every tag lands:
no update is lost to another's read-modify-write."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability._servers import hera_servers, server_env
from tests.support.jwks import Issuer, auth_env, jwks_server
from tests.support.polling import entered_in_thread
from tests.support.services import unavailable

pytestmark = pytest.mark.slow

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
FIELDS = ("name", "age", "location", *BIG_FIVE)  # 8 fields; 20 PUTs: each set 2 or 3 times


def put_body(index: int) -> tuple[str, Any, dict[str, Any]]:
    """The field PUT number `index` sets, its value, and the request body."""
    field = FIELDS[index % len(FIELDS)]
    if field == "name":
        return field, f"名前{index}", {"name": f"名前{index}"}
    if field == "age":
        return field, 20 + index, {"age": 20 + index}
    if field == "location":
        return field, f"町{index}", {"location": f"町{index}"}
    value = round(index / 100, 2)
    return field, value, {"personality_traits": {field: value}}


def field_of(record: dict[str, Any], field: str) -> Any:
    return record["personality_traits"].get(field) if field in BIG_FIVE else record[field]


async def test_concurrent_record_changes_and_tag_adds_from_two_processes_all_land(
    tmp_path: Path, redis_url: str | None
) -> None:
    if redis_url is None:
        unavailable("no Redis server reachable for the two-process test")
    assert redis_url is not None
    namespace = f"hera-rel-{uuid.uuid4().hex[:12]}"
    with jwks_server() as jwks:
        env = server_env(
            REDIS_URL=redis_url,
            REDIS_NAMESPACE=namespace,
            HERA_DATA_DIR=str(tmp_path / "data"),
            **auth_env(jwks),
        )
        me = Issuer(jwks.keys[0]).bearer(f"busy-{uuid.uuid4().hex[:8]}")
        try:
            async with entered_in_thread(hera_servers(tmp_path / "run", env, count=2)) as servers:
                one, two = (httpx.AsyncClient(base_url=s.url, timeout=60) for s in servers)
                async with one, two:
                    clients = (one, two)
                    # Both processes have verified the token before the burst.
                    for client in clients:
                        assert (await client.get("/api/users/me", headers=me)).status_code == 200

                    sent: dict[str, set[Any]] = {field: set() for field in FIELDS}
                    requests = []
                    for index in range(20):
                        field, value, body = put_body(index)
                        sent[field].add(value)
                        client = clients[index % 2]
                        requests.append(client.put("/api/users/me", json=body, headers=me))
                    tags = [f"タグ{index:02d}" for index in range(20)]
                    for index, tag in enumerate(tags):
                        client = clients[(index + 1) % 2]
                        requests.append(
                            client.post("/api/users/me/tags", json={"tag": tag}, headers=me)
                        )
                    answers = await asyncio.gather(*requests)
                    assert [a.status_code for a in answers] == [200] * 40, [
                        a.text for a in answers if a.status_code != 200
                    ]

                    records = [(await c.get("/api/users/me", headers=me)).json() for c in clients]
                    assert records[0] == records[1]  # both processes read one record
                    record = records[0]
                    assert sorted(record["tags"]) == tags
                    landed = {field: field_of(record, field) for field in FIELDS}
                    missing = {f: v for f, v in landed.items() if v not in sent[f]}
                    assert missing == {}, (
                        f"fields lost or never written: {missing}; record {record}"
                    )
        finally:
            from tests.support.redis_support import cleanup_namespace

            await cleanup_namespace(redis_url, namespace)
