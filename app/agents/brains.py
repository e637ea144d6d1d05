"""The brain port: what the agents ask of an LLM (or of the offline rules).

Adapters live in `app/brains/` (`offline/`: deterministic Japanese rules, no network;
`gemini/`: google-genai). Agents depend only on these types and the domain's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.domain.family import Persona, TripInfo, TripPlan
from app.domain.profile import Child, Profile

JSONDict = dict[str, Any]

# Streaming: a brain given a sink hands it the text as the model writes it, piece by piece,
# and still returns the whole answer, which alone is validated and stored. A sink must not
# block (it only queues); the pieces of one text, joined, are that text as the brain read it.
TextSink = Callable[[str], None]  # the next piece of one text (a reply, a story, a letter)
LineSink = Callable[[str, str], None]  # (member's name, the next piece of their line)


class BrainError(Exception):
    """The model failed or answered with nothing usable (after bounded retries)."""


class BrainTimeout(BrainError):
    """The model did not answer within LLM_TIMEOUT_SECONDS."""


class Overloaded(Exception):
    """Too many model calls already wait in this process; try again shortly (not a model
    failure: nothing is papered over with a fallback)."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("model calls are queued beyond LLM_MAX_QUEUE")
        self.retry_after = retry_after


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
        profile: Profile,
        history: list[JSONDict],
        message: str,
        missing_fields: list[str],
        on_reply: TextSink | None = None,
    ) -> InterviewTurn:
        """Reply to `message` as Hera and extract profile fields from it (one model call);
        the reply's pieces go to `on_reply` as they are written."""
        ...


class FamilyBrain(Protocol):
    """The future family's voice. Personas (`app/domain/family.py`, made once by
    `app/domain/personas.py`) come partner first, then one per child. History entries are
    stored dicts: `{"speaker": <name or "user">, "role": <role or "user">, "message",
    "timestamp"}` (`app/domain/history.py`)."""

    async def family_turn(
        self,
        *,
        profile: Profile,
        personas: list[Persona],
        history: list[JSONDict],
        trip_info: TripInfo,
        message: str,
        proposal_pending: bool,
        on_line: LineSink | None = None,
    ) -> FamilyTurn: ...

    async def write_story(
        self,
        *,
        profile: Profile,
        personas: list[Persona],
        plan: TripPlan,
        on_text: TextSink | None = None,
    ) -> str: ...

    async def write_letter(
        self,
        *,
        profile: Profile,
        personas: list[Persona],
        plan: TripPlan,
        on_text: TextSink | None = None,
    ) -> str: ...


class ImageBrain(Protocol):
    async def partner_image(self, *, description: str, gender: str | None) -> GeneratedImage: ...

    async def child_image(
        self,
        *,
        user_photo: bytes,
        partner_image: bytes,
        child: Child,
        index: int,
    ) -> GeneratedImage: ...

    async def aclose(self) -> None: ...
