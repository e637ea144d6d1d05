"""The future family's values: personas, trip info, the proposed and the agreed plan.

`TripInfo.merge` is the one rule for what a turn learns about the trip, `TripInfo.ready` the
one rule for when the partner proposes, `Plan` what an agreed trip keeps. Stored JSON is what
these dump.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

JSONDict = dict[str, Any]
MIN_ACTIVITIES: Final = 2
MAX_ACTIVITIES: Final = 10
_TEXT: Final = 50  # characters of a destination or an activity

_STORED: Final = ConfigDict(extra="ignore", frozen=True)


class Persona(BaseModel):
    """A member of the future family: the partner first, then one per child."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str
    kind: Literal["partner", "child"]
    name: str
    role: str  # 妻 | 夫 | パートナー | 息子 | 娘 | 子ども
    gender: str | None = None
    age: int | None = None
    speaking_style: str = ""
    personality: str = ""
    traits: dict[str, float] = Field(default_factory=dict)
    goals: str = ""
    background: str = ""

    def stored(self) -> JSONDict:
        return self.model_dump(mode="json")


class TripPlan(BaseModel):
    """Where and what: a proposal waiting for the user's answer."""

    model_config = _STORED
    destination: str
    activities: list[str]

    def key(self) -> list[Any]:
        """The same trip whatever the order of its activities (a declined one is not
        proposed again until something changes)."""
        return [self.destination, sorted(self.activities)]

    def stored(self) -> JSONDict:
        return self.model_dump(mode="json")


class TripInfo(BaseModel):
    """What the family has talked about so far."""

    model_config = _STORED
    destination: str | None = None
    activities: list[str] = Field(default_factory=list)

    def merge(self, found: Any) -> TripInfo:
        """Destination: the latest mentioned wins. Activities: accumulate, no duplicates."""
        found = found if isinstance(found, dict) else {}
        activities = [str(a) for a in self.activities]
        news = found.get("activities")
        for item in news if isinstance(news, list) else []:
            if isinstance(item, str) and item.strip() and item.strip() not in activities:
                activities.append(item.strip()[:_TEXT])
        destination = found.get("destination")
        if isinstance(destination, str) and destination.strip():
            new_destination: str | None = destination.strip()[:_TEXT]
        else:
            new_destination = self.destination
        return TripInfo(destination=new_destination, activities=activities[:MAX_ACTIVITIES])

    def ready(self, declined: Any) -> TripPlan | None:
        """The plan to propose: once a destination and enough activities are known, and
        (after a "no") only once the trip has changed."""
        if not self.destination or len(self.activities) < MIN_ACTIVITIES:
            return None
        plan = TripPlan(destination=self.destination, activities=self.activities)
        return None if plan.key() == declined else plan

    def stored(self) -> JSONDict:
        return self.model_dump(mode="json")


class Plan(BaseModel):
    """An agreed trip, with the story and the letter written for it."""

    model_config = _STORED
    destination: str
    activities: list[str]
    story: str
    letter: str
    confirmed_at: str

    def stored(self) -> JSONDict:
        return self.model_dump(mode="json")
