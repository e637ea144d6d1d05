"""Request and response models of a signed-in person's routes (`/api/users/me`, `/api/profile`),
shaped as the frontend's `lib/api-client.ts` reads them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas import TS_EXAMPLE

OWNER_EXAMPLE = "9f86d081884c7d659a2feaa0c55ad015"


class BigFiveScores(BaseModel):
    """Big Five scores, 0..1; only these five names."""

    model_config = ConfigDict(extra="forbid")
    openness: float | None = Field(None, ge=0, le=1)
    conscientiousness: float | None = Field(None, ge=0, le=1)
    extraversion: float | None = Field(None, ge=0, le=1)
    agreeableness: float | None = Field(None, ge=0, le=1)
    neuroticism: float | None = Field(None, ge=0, le=1)


class UserUpdate(BaseModel):
    """A partial update: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100, examples=["花子"])
    age: int | None = Field(None, ge=0, le=130, strict=True, examples=[32])
    location: str | None = Field(None, min_length=1, max_length=100, examples=["東京"])
    personality_traits: BigFiveScores | None = None


class UserMe(BaseModel):
    uid: str = Field(description="The token's subject.")
    email: str | None = None
    name: str | None = None
    picture: str | None = None
    age: int | None = None
    location: str | None = None
    personality_traits: dict[str, float] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = Field(None, examples=[TS_EXAMPLE])
    updated_at: datetime | None = Field(None, examples=[TS_EXAMPLE])


class TagRequest(BaseModel):
    tag: str = Field(min_length=1, max_length=32, examples=["旅行好き"])

    @field_validator("tag")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a tag is not blank")
        return value.strip()


class TagsResponse(BaseModel):
    tags: list[str]


class ProfileResponse(BaseModel):
    name: str | None = None
    email: str | None = None
    picture: str | None = None
    age: int | None = None
    location: str | None = None
    personality_traits: dict[str, float] = Field(default_factory=dict)
    user_image_path: str | None = Field(
        None, description="A signed URL of the photo of the person's newest session."
    )


class ArtifactLetter(BaseModel):
    content: str
    from_: str = Field(alias="from", serialization_alias="from")
    model_config = ConfigDict(populate_by_name=True)


class ArtifactChild(BaseModel):
    name: str
    image_path: str | None = None


class ArtifactImages(BaseModel):
    user: str | None = None
    partner: str | None = None
    children: list[ArtifactChild] = Field(default_factory=list)


class TripPlanResponse(BaseModel):
    destination: str
    activities: list[str]


class Artifact(BaseModel):
    session_id: str
    created_at: datetime
    story: str
    letter: ArtifactLetter
    images: ArtifactImages
    trip_plan: TripPlanResponse


class ArtifactsPage(BaseModel):
    artifacts: list[Artifact]
    next_cursor: str | None = Field(None, description="Opaque; pass it as `cursor` for more.")


class MySession(BaseModel):
    session_id: str
    created_at: datetime
    updated_at: datetime
    interview_status: str
    family_status: str
    expires_at: datetime


class SessionsPage(BaseModel):
    sessions: list[MySession]
    next_cursor: str | None = None
