"""Partner and child portraits on Gemini's image model (`response_modalities=["IMAGE"]`).

Built with the same keywords as the other Gemini brains, `model` being the IMAGE model's name.
Every answer goes through `GeminiCaller`: a refusal (IMAGE_SAFETY, NO_IMAGE, SAFETY, no
candidates, no inline image) is a `BrainError`, never a blank placeholder. Children's names
stay out of the prompt, so they cannot end up drawn into an image.
"""

from __future__ import annotations

from typing import Final

from google.genai import types

from app.agents.brains import BrainError, GeneratedImage
from app.brains.gemini.caller import GeminiBrainBase
from app.domain.images import sniff_image_type
from app.domain.profile import Child

_STYLE: Final = (
    "Head and shoulders, looking at the camera with a gentle, kind smile; soft natural light; "
    "a simple, softly blurred background; photorealistic, natural skin texture. "
    "No text, captions, logos or watermarks."
)
_GENDERS: Final = {
    "女性": "a woman (女性)",
    "female": "a woman (女性)",
    "woman": "a woman (女性)",
    "男性": "a man (男性)",
    "male": "a man (男性)",
    "man": "a man (男性)",
}
_BOY, _GIRL = "男の子", "女の子"
_CHILD_GENDERS: Final = {
    **dict.fromkeys((_BOY, "男", "男性", "息子", "boy", "male"), _BOY),
    **dict.fromkeys((_GIRL, "女", "女性", "娘", "girl", "female"), _GIRL),
}
_CHILD_SUBJECTS: Final = {_BOY: "a boy (男の子)", _GIRL: "a girl (女の子)"}
_DEFAULT_CHILD_AGE: Final = 5


class GeminiImageBrain(GeminiBrainBase):
    """`ImageBrain` on Gemini: one image-model call per portrait (plus bounded retries)."""

    async def partner_image(self, *, description: str, gender: str | None) -> GeneratedImage:
        if not description.strip():
            raise ValueError("a partner portrait needs a description")
        subject = _GENDERS.get((gender or "").strip().lower()) or (
            f"a person ({gender.strip()})" if gender and gender.strip() else "a person"
        )
        prompt = (
            f"A warm, realistic portrait photograph of {subject}: the user's future life "
            f"partner. Follow this description of their face and appearance (Japanese): "
            f"{description.strip()}\n{_STYLE} One person only.\n"
            "説明に忠実に、温かく自然な雰囲気のポートレート写真を一枚生成してください。"
        )
        return await self._caller.generate_image(purpose="partner image", contents=prompt)

    async def child_image(
        self,
        *,
        user_photo: bytes,
        partner_image: bytes,
        child: Child,
        index: int,
    ) -> GeneratedImage:
        gender = _CHILD_GENDERS.get((child.desired_gender or "").strip().lower())
        years = _DEFAULT_CHILD_AGE  # the profile holds no age for a wished-for child
        subject = _CHILD_SUBJECTS.get(gender or "", "a child")
        prompt = (
            f"Create a warm, realistic portrait photograph of their child: {subject}, about "
            f"{years} years old (child number {index} of the family), who naturally resembles "
            "BOTH parents — blend the face shape, eyes, nose, mouth, hair and skin tone of the "
            f"two people above. {_STYLE} Only the child; no adults in the picture.\n"
            f"二人の親の特徴を受け継いだ{gender or '子ども'}の、自然で温かいポートレート写真を"
            "一枚生成してください。"
        )
        parts = [
            types.Part.from_text(text="Parent 1 (the user), photo:"),
            types.Part.from_bytes(data=user_photo, mime_type=_image_type(user_photo, "user photo")),
            types.Part.from_text(text="Parent 2 (the user's partner), portrait:"),
            types.Part.from_bytes(
                data=partner_image, mime_type=_image_type(partner_image, "partner image")
            ),
            types.Part.from_text(text=prompt),
        ]
        contents = types.Content(role="user", parts=parts)
        return await self._caller.generate_image(purpose="child image", contents=contents)

    async def aclose(self) -> None:
        """Nothing to close: the shared client belongs to the app's lifespan."""


def _image_type(data: bytes, label: str) -> str:
    """The content type of a PNG, JPEG or WebP image from its magic bytes."""
    if (content_type := sniff_image_type(data[:16])) is None:
        raise BrainError(f"the {label} is not a PNG, JPEG or WebP image")
    return content_type
