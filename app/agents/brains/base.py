"""The brain port: what the agents ask of an LLM (or of the offline rules).

Adapters: `offline.py` (deterministic Japanese rules, no network) and `gemini.py`
(google-genai). Agents depend only on these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JSONDict = dict[str, Any]


class BrainError(Exception):
    """The model failed or answered with nothing usable (after bounded retries)."""


class BrainTimeout(BrainError):
    """The model did not answer within LLM_TIMEOUT_SECONDS."""


@dataclass(frozen=True, slots=True)
class InterviewTurn:
    """One Hera turn: the reply, and the profile fields extracted from the user's message.

    `extracted` is untrusted: the agent validates and merges it (unknown keys ignored).
    """

    reply: str
    extracted: JSONDict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FamilyLine:
    speaker: str  # the member's role/name as shown to the user
    message: str


@dataclass(frozen=True, slots=True)
class FamilyTurn:
    lines: list[FamilyLine]
    trip_info: JSONDict = field(default_factory=dict)  # {"destination"?: str, "activities"?: [str]}
    # The user's answer to a pending plan proposal, judged from the user's message only.
    proposal_answer: Literal["accept", "decline"] | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    content_type: str
    meta: JSONDict = field(default_factory=dict)  # always has "engine"


class InterviewBrain(Protocol):
    async def interview_turn(
        self,
        *,
        profile: JSONDict,
        history: list[JSONDict],
        message: str,
        missing_fields: list[str],
    ) -> InterviewTurn:
        """Reply to `message` as Hera and extract profile fields from it (one model call)."""
        ...


class FamilyBrain(Protocol):
    """The future family's voice.

    Personas (stored in the session, made by `app/agents/personas.py`) are dicts:
    `{"id": "partner" | "child_1" | ..., "kind": "partner" | "child", "name": str,
      "role": "妻" | "夫" | "パートナー" | "息子" | "娘" | "子ども", "gender": "女性" | "男性" | None,
      "age": int | None, "speaking_style": str, "personality": str, "traits": {Big Five 0..1},
      "goals": str, "background": str}` — the partner first, then one per child.
    History entries: `{"speaker": <name or "user">, "role": <role or "user">, "message", "timestamp"}`.
    Trip info: `{"destination": str | None, "activities": [str, ...]}`.
    A plan: `{"destination": str, "activities": [str, ...]}`.
    """

    async def family_turn(
        self,
        *,
        profile: JSONDict,
        personas: list[JSONDict],
        history: list[JSONDict],
        trip_info: JSONDict,
        message: str,
        proposal_pending: bool,
    ) -> FamilyTurn: ...

    async def write_story(
        self, *, profile: JSONDict, personas: list[JSONDict], plan: JSONDict
    ) -> str: ...

    async def write_letter(
        self, *, profile: JSONDict, personas: list[JSONDict], plan: JSONDict
    ) -> str: ...


class ImageBrain(Protocol):
    async def partner_image(self, *, description: str, gender: str | None) -> GeneratedImage: ...

    async def child_image(
        self,
        *,
        user_photo: bytes,
        partner_image: bytes,
        child: JSONDict,
        index: int,
    ) -> GeneratedImage: ...

    async def aclose(self) -> None: ...
