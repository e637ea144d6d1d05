"""The family state machine over the in-memory store, with a scripted brain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.agents.brains import BrainError, FamilyLine, FamilyTurn
from app.agents.errors import InterviewIncomplete
from app.agents.family import FamilyAgent
from app.agents.hera import HeraAgent
from app.brains.offline.interview import OfflineInterviewBrain
from app.domain.family import TripInfo, TripPlan
from app.domain.profile import Profile
from app.repositories.memory_sessions import MemorySessionRepository
from tests.support.brains import Switchable, shared_analyser
from tests.support.writes import update

Script = Callable[[dict[str, Any]], FamilyTurn]


def profile(gender: str = "女性", status: str = "single") -> dict[str, Any]:
    key = "current_partner" if status in ("married", "partnered") else "ideal_partner"
    return {
        "age": 32,
        "gender": gender,
        "relationship_status": status,
        "location": "東京",
        "income_range": "500万円",
        "user_personality_traits": {"openness": 0.8, "extraversion": 0.7},
        "partner_face_description": "優しい目",
        key: {"name": "健太", "temperament": "穏やか", "appearance": "背が高い"},
        "children_info": [{"name": "太郎", "desired_gender": "男の子"}],
    }


class ScriptedBrain:
    """Answers from a script and records what the agent asked."""

    def __init__(self, script: Script, *, story_fails: bool = False) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.story_fails = story_fails

    async def family_turn(self, **kwargs: Any) -> FamilyTurn:
        self.calls.append(kwargs)
        return self.script(kwargs)

    async def write_story(self, **_: Any) -> str:
        if self.story_fails:
            raise BrainError("story model down")
        return "物語" * 450

    async def write_letter(self, **_: Any) -> str:
        return "手紙" * 330


def says(*trip: Any, answer: str | None = None) -> Script:
    def script(call: dict[str, Any]) -> FamilyTurn:
        names = [p.name for p in call["personas"]]
        info: dict[str, Any] = {}
        for item in trip:
            if isinstance(item, list):
                info["activities"] = item
            else:
                info["destination"] = item
        return FamilyTurn(
            lines=[FamilyLine(n, f"{n}です") for n in names], trip_info=info, proposal_answer=answer
        )

    return script


class Family(FamilyAgent):
    """The agent under test, built over a brain the test re-scripts turn by turn."""

    def __init__(self, store: MemorySessionRepository) -> None:
        self.brain = Switchable(ScriptedBrain(says()), [])
        super().__init__(sessions=store, brain=self.brain)  # type: ignore[arg-type]


async def family_with(prof: dict[str, Any]) -> tuple[Family, MemorySessionRepository, str]:
    store = MemorySessionRepository()
    sid = (await store.create()).session_id
    await update(store, session_id=sid, doc="profile", fields=prof)
    return Family(store), store, sid


def use(family: Family, script: Script, **kw: Any) -> ScriptedBrain:
    brain = ScriptedBrain(script, **kw)
    family.brain.inner = brain
    return brain


async def test_personas_are_created_once_by_complete_and_stored() -> None:
    _, store, sid = await family_with(profile())
    hera = HeraAgent(sessions=store, brain=OfflineInterviewBrain(shared_analyser()))

    async def personas() -> list[dict[str, Any]]:
        snap = await store.load(session_id=sid, docs=["family", "state"])
        assert snap.doc("state")["interview_status"] == "COMPLETED"
        return list(snap.doc("family")["personas"])

    await hera.complete(sid)
    first = await personas()
    await hera.complete(sid)
    assert await personas() == first
    assert [p["kind"] for p in first] == ["partner", "child"]


async def test_family_chat_needs_a_complete_profile() -> None:
    incomplete = profile()
    del incomplete["children_info"]
    agent, _, sid = await family_with(incomplete)
    with pytest.raises(InterviewIncomplete) as err:
        await agent.handle_message(sid, "こんにちは")
    assert err.value.missing == ["children_info"]


@pytest.mark.parametrize(
    ("gender", "status", "role"),
    [("女性", "single", "夫"), ("男性", "married", "妻"), ("その他", "partnered", "パートナー")],
)
async def test_the_partner_proposes_whatever_their_role_word(
    gender: str, status: str, role: str
) -> None:
    agent, _, sid = await family_with(profile(gender, status))
    use(agent, says("沖縄", ["海水浴", "水族館"]))
    result = await agent.handle_message(sid, "沖縄で海水浴と水族館！")
    assert result.view.proposal == TripPlan(destination="沖縄", activities=["海水浴", "水族館"])
    proposer = result.reply[-1]
    assert proposer["role"] == role
    assert proposer["speaker"] == "健太"
    assert "沖縄" in proposer["message"]


async def test_a_member_cannot_confirm_in_the_proposal_turn() -> None:
    agent, _, sid = await family_with(profile())
    # The brain claims "accept" in the very turn the proposal is made: it must not count.
    use(agent, says("沖縄", ["海水浴", "水族館"], answer="accept"))
    result = await agent.handle_message(sid, "沖縄で海水浴と水族館")
    assert result.view.proposal is not None
    assert result.view.complete is False
    assert result.view.plan is None


async def test_the_users_next_message_accepts_and_stores_story_and_letter() -> None:
    agent, store, sid = await family_with(profile())
    use(agent, says("沖縄", ["海水浴", "水族館"]))
    await agent.handle_message(sid, "沖縄で海水浴と水族館")
    brain = use(agent, says(answer="accept"))
    result = await agent.handle_message(sid, "いいね！")
    assert brain.calls[0]["proposal_pending"] is True
    assert result.view.complete is True
    plan = result.view.plan
    assert plan is not None
    assert plan.destination == "沖縄"
    assert plan.story.startswith("物語") and plan.letter.startswith("手紙")
    stored = (await store.load(session_id=sid, docs=["family"])).doc("family")
    assert stored["plan"] == plan.stored()  # "complete" is derived from the stored plan


async def test_after_completion_messages_get_a_closing_reply_and_change_nothing() -> None:
    agent, store, sid = await family_with(profile())
    use(agent, says("沖縄", ["海水浴", "水族館"]))
    await agent.handle_message(sid, "沖縄で海水浴と水族館")
    use(agent, says(answer="accept"))
    await agent.handle_message(sid, "いいね！")
    before = await store.load(session_id=sid, docs=["family"], logs=["family_history"])
    brain = use(agent, says("北海道", ["スキー", "温泉"]))
    result = await agent.handle_message(sid, "やっぱり北海道にしない？")
    after = await store.load(session_id=sid, docs=["family"], logs=["family_history"])
    assert len(result.reply) == 1 and result.reply[0]["message"]
    assert brain.calls == []
    assert after.docs == before.docs and after.logs == before.logs


async def test_a_no_leads_to_a_new_proposal_only_after_the_trip_changes() -> None:
    agent, _, sid = await family_with(profile())
    use(agent, says("沖縄", ["海水浴", "水族館"]))
    await agent.handle_message(sid, "沖縄で海水浴と水族館")
    use(agent, says(answer="decline"))
    declined = await agent.handle_message(sid, "うーん、やめておこう")
    assert declined.view.proposal is None and declined.view.complete is False
    use(agent, says())
    quiet = await agent.handle_message(sid, "どうしようかな")
    assert quiet.view.proposal is None  # same trip as the declined one: no repeat
    use(agent, says(["花火"]))
    again = await agent.handle_message(sid, "花火もしたい")
    assert again.view.proposal == TripPlan(
        destination="沖縄", activities=["海水浴", "水族館", "花火"]
    )


async def test_a_failed_story_is_replaced_by_a_fallback_never_empty() -> None:
    agent, _, sid = await family_with(profile())
    use(agent, says("京都", ["お寺めぐり", "食べ歩き"]))
    await agent.handle_message(sid, "京都でお寺めぐりと食べ歩き")
    use(agent, says(answer="accept"), story_fails=True)
    result = await agent.handle_message(sid, "賛成！")
    assert result.view.plan is not None
    assert "京都" in result.view.plan.story
    assert result.view.plan.letter.startswith("手紙")


async def test_activities_accumulate_without_duplicates() -> None:
    agent, _, sid = await family_with(profile())
    use(agent, says("沖縄", ["海水浴"]))
    await agent.handle_message(sid, "沖縄で海水浴")
    use(agent, says(["海水浴", "  "]))
    result = await agent.handle_message(sid, "海水浴は絶対")
    assert result.view.trip_info == TripInfo(destination="沖縄", activities=["海水浴"])
    assert result.view.proposal is None


async def test_status_writes_nothing() -> None:
    agent, store, sid = await family_with(profile())
    before = await store.get_meta(session_id=sid)
    view = await agent.status(sid)
    assert view.personas == [] and view.history == []
    assert (await store.get_meta(session_id=sid)).updated_at == before.updated_at


def test_a_second_child_named_alone_does_not_replace_the_first() -> None:
    def merge_profile(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        merged, changed = Profile.from_untrusted(old).merge(Profile.from_untrusted(new))
        return merged.stored(), changed

    first = {"children_info": [{"name": "さくら", "desired_gender": "女の子"}]}
    merged, changed = merge_profile(
        first, {"children_info": [{"name": "たろう", "desired_gender": "男の子"}]}
    )
    assert merged["children_info"] == [
        {"name": "さくら", "desired_gender": "女の子"},
        {"name": "たろう", "desired_gender": "男の子"},
    ]
    assert changed == ["children_info"]
    named_later, _ = merge_profile(
        {"children_info": [{"desired_gender": "男の子"}]}, {"children_info": [{"name": "太郎"}]}
    )
    assert named_later["children_info"] == [{"desired_gender": "男の子", "name": "太郎"}]
