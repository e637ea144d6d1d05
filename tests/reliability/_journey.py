"""The whole journey of `tests/api/test_journey.py`, with requests spread over several servers.

`Spread` sends request n to client n % len(clients), so with two server processes every step
lands on the other process than the one before; with one multi-worker server and no
keep-alive, every request is a new connection that either worker may accept. After every
step, what each server shows must be exactly what the previous steps wrote: nothing lost,
nothing doubled, nothing regenerated.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.agents.family import proposal_text
from app.agents.hera import COMPLETION_MESSAGE
from app.domain.family import TripPlan
from app.repositories.base import SessionRepository
from tests.api.images import jpeg_photo
from tests.api.scripted_user import SCRIPT
from tests.api.test_journey import FAMILY_SCRIPT
from tests.support.writes import update

PID_HEADER = "x-served-by"


@dataclass
class Spread:
    clients: list[httpx.AsyncClient]
    sent: int = 0
    served_by: Counter[str] = field(default_factory=Counter)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        client = self.clients[self.sent % len(self.clients)]
        self.sent += 1
        response = await client.request(method, url, **kwargs)
        self.served_by[response.headers.get(PID_HEADER, str(client.base_url))] += 1
        return response

    async def each(self, method: str, url: str, **kwargs: Any) -> list[httpx.Response]:
        """The same request once through every client (what every server shows)."""
        return [await self.request(method, url, **kwargs) for _ in self.clients]


def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json()


async def same_everywhere(spread: Spread, url: str) -> Any:
    bodies = [_json(r) for r in await spread.each("GET", url)]
    assert all(body == bodies[0] for body in bodies[1:]), f"servers disagree on {url}"
    return bodies[0]


async def same_image_everywhere(spread: Spread, url: str) -> bytes:
    responses = await spread.each("GET", url)
    for response in responses:
        assert response.status_code == 200, response.text
    assert len({r.content for r in responses}) == 1, f"servers serve different bytes for {url}"
    assert len({r.headers["etag"] for r in responses}) == 1
    return responses[0].content


async def run_journey(spread: Spread, sessions: SessionRepository) -> dict[str, Any]:
    """The journey; returns what the caller may check further (session id, plan, ...)."""
    sid = _json(await spread.request("POST", "/api/sessions"), 201)["session_id"]
    base = f"/api/sessions/{sid}"

    # --- interview: every turn adds exactly its two entries (three on completion).
    expected, body = 0, {}
    for message in SCRIPT:
        body = _json(await spread.request("POST", f"{base}/messages", json={"message": message}))
        expected += 3 if body["profile_complete"] else 2
        history = body["conversation_history"]
        assert len(history) == expected, (message, history)
        assert history[-3 if body["profile_complete"] else -2]["message"] == message
        if body["profile_complete"]:
            assert history[-1]["message"] == COMPLETION_MESSAGE
            break
    assert body["profile_complete"], body["missing_fields"]
    status = await same_everywhere(spread, f"{base}/status")
    assert len(status["conversation_history"]) == expected
    assert status["user_profile"] == body["user_profile"]
    profile = status["user_profile"]

    # --- images: written by one process, served byte-identical by every process.
    upload = await spread.request(
        "POST", f"{base}/photos/user", files={"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
    )
    user_bytes = await same_image_everywhere(spread, _json(upload)["image_url"])
    assert user_bytes[:2] == b"\xff\xd8"
    partner = await spread.request("POST", f"{base}/generate-image", json={"target": "partner"})
    await same_image_everywhere(spread, _json(partner)["image_url"])
    children = _json(await spread.request("POST", f"{base}/generate-child-image"))
    assert len(children["images"]) == len(profile["children_info"])
    for kid in children["images"]:
        await same_image_everywhere(spread, kid["image_url"])
    summary = await same_everywhere(spread, base)
    kids = [f"child_{i}" for i in range(1, len(children["images"]) + 1)]
    assert summary["images"] == sorted(["user", "partner", *kids])

    # --- the family: created once, stored, the same from every process.
    _json(await spread.request("POST", f"{base}/complete"))
    family = await same_everywhere(spread, f"{base}/family/status")
    members = family["members"]
    assert [m["kind"] for m in members] == ["partner"] + ["child"] * len(kids)
    stored = (await sessions.load(session_id=sid, docs=["family"])).doc("family")["personas"]
    assert members == [{k: p.get(k) for k in members[0]} for p in stored]
    # Mark the stored personas: a process that rebuilt them would lose the mark.
    probe = uuid.uuid4().hex
    marked = [{**p, "probe": probe} for p in stored]
    await update(sessions, session_id=sid, doc="family", fields={"personas": marked})

    # --- family chat: each turn adds its user entry and exactly the lines it replied.
    names = {m["name"] for m in members}
    length, sent = 0, []
    for message in FAMILY_SCRIPT:
        url = f"{base}/family/messages"
        body = _json(await spread.request("POST", url, json={"message": message}))
        sent.append(message)
        assert body["reply"] and all(r["speaker"] in names for r in body["reply"])
        history = body["conversation_history"]
        length += 1 + len(body["reply"])
        assert len(history) == length, (message, history)
        assert history[-1 - len(body["reply"])]["message"] == message
        assert history[-len(body["reply"]) :] == body["reply"]
        if body["conversation_complete"]:
            break
    assert body["conversation_complete"] is True, body
    plan = body["family_plan"]
    assert plan["destination"] == "沖縄" and len(plan["activities"]) >= 2
    assert 800 <= len(plan["story"]) <= 1200 and 600 <= len(plan["letter"]) <= 900
    final = await same_everywhere(spread, f"{base}/family/status")
    assert final["family_plan"] == plan  # one story and one letter, whoever is asked
    assert final["members"] == members
    history = final["conversation_history"]
    assert len(history) == length
    assert [e["message"] for e in history if e["speaker"] == "user"] == sent
    proposal = proposal_text(
        TripPlan(destination=plan["destination"], activities=plan["activities"])
    )
    assert sum(e["message"] == proposal for e in history) == 1  # proposed once, accepted once

    # --- after the plan: every process gives the closing line and changes nothing.
    for response in await spread.each(
        "POST", f"{base}/family/messages", json={"message": "ありがとう！"}
    ):
        assert len(_json(response)["reply"]) == 1
    after = await same_everywhere(spread, f"{base}/family/status")
    assert after == final
    kept = (await sessions.load(session_id=sid, docs=["family"])).doc("family")
    assert kept["personas"] == marked, "the stored personas were regenerated"
    assert kept["plan"] == plan
    return {"session_id": sid, "plan": plan, "members": members}


async def delete_everywhere(spread: Spread, sid: str) -> None:
    """Delete through one process; every process then reports the session gone."""
    assert (await spread.request("DELETE", f"/api/sessions/{sid}")).status_code == 204
    for response in await spread.each("GET", f"/api/sessions/{sid}"):
        assert response.status_code == 404, response.text
