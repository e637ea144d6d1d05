"""The Gemini image brain, through the real google-genai SDK against a local fake server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from google import genai

from app.agents.brains import BrainError, BrainTimeout
from app.brains.gemini.images import GeminiImageBrain
from app.brains.slots import ModelSlots
from app.domain.profile import Child
from tests.support.fake_gemini import (
    FakeGemini,
    error_body,
    image_body,
    no_image_body,
    safety_blocked_body,
    text_body,
)

IMAGE_MODEL = "gemini-test-image-model"
TIMEOUT = 0.5
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"-partner-"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) + b"-user-photo-"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\xfb\xff\xfe-webp-"
DRAWN = b"\x89PNG\r\n\x1a\n" + b"drawn-by-the-model" * 20
CHILD = Child(name="結衣", desired_gender="女の子")

BrainFactory = Callable[..., GeminiImageBrain]


@pytest.fixture
def make_brain(gemini_client: genai.Client) -> BrainFactory:
    def build(**overrides: Any) -> GeminiImageBrain:
        options: dict[str, Any] = {
            "client": gemini_client,
            "model": IMAGE_MODEL,
            "timeout_seconds": TIMEOUT,
            "max_retries": 2,
            "slots": ModelSlots(limit=4, max_queue=100),
            "backoff_base_seconds": 0.01,
        }
        options.update(overrides)
        return GeminiImageBrain(**options)

    return build


async def draw_child(brain: GeminiImageBrain, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "user_photo": JPEG,
        "partner_image": PNG,
        "child": CHILD,
        "index": 1,
    }
    options.update(overrides)
    return await brain.child_image(**options)


# ------------------------------------------------------------------------------ partner
async def test_partner_image_is_one_image_model_request_with_the_image_modality(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, image_body(DRAWN, "image/png"))

    image = await make_brain().partner_image(description="黒髪で目元の優しい人", gender="女性")

    assert image.data == DRAWN
    assert image.content_type == "image/png"
    assert image.meta == {"engine": "gemini", "model": IMAGE_MODEL}
    [request] = fake_gemini.requests
    assert re.fullmatch(rf"/v1(beta)?/models/{IMAGE_MODEL}:generateContent", request.path)
    assert request.json is not None
    config = request.json["generationConfig"]
    assert config["responseModalities"] == ["IMAGE"]
    assert "responseMimeType" not in config
    assert "黒髪で目元の優しい人" in request.prompt
    assert request.inline_images == []


@pytest.mark.parametrize(
    ("gender", "present", "absent"),
    [
        ("女性", ["a woman", "女性"], ["a man", "男性"]),
        ("男性", ["a man", "男性"], ["a woman", "女性"]),
        (None, ["a person"], ["a woman", "a man", "女性", "男性"]),
    ],
)
async def test_partner_gender_follows_the_argument_and_is_omitted_when_unknown(
    fake_gemini: FakeGemini,
    make_brain: BrainFactory,
    gender: str | None,
    present: list[str],
    absent: list[str],
) -> None:
    fake_gemini.enqueue(200, image_body(DRAWN))

    await make_brain().partner_image(description="笑顔が素敵", gender=gender)

    [request] = fake_gemini.requests
    assert all(word in request.prompt for word in present)
    assert not any(word in request.prompt for word in absent)


# ------------------------------------------------------------------------------ child
async def test_child_request_carries_both_parent_images_and_the_desired_gender(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, image_body(DRAWN, "image/jpeg"))

    image = await draw_child(make_brain())

    assert (image.data, image.content_type) == (DRAWN, "image/jpeg")
    assert image.meta == {"engine": "gemini", "model": IMAGE_MODEL}
    [request] = fake_gemini.requests
    assert request.model == IMAGE_MODEL
    assert request.json is not None
    assert request.json["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert request.inline_images == [("image/jpeg", JPEG), ("image/png", PNG)]
    assert "女の子" in request.prompt and "a girl" in request.prompt
    assert "BOTH parents" in request.prompt
    assert CHILD.name is not None
    assert CHILD.name not in str(request.json)
    assert CHILD.name not in str(image.meta)


@pytest.mark.parametrize(
    ("desired_gender", "word"), [("男の子", "a boy"), ("息子", "a boy"), ("娘", "a girl")]
)
async def test_child_gender_words_are_normalised(
    fake_gemini: FakeGemini, make_brain: BrainFactory, desired_gender: str, word: str
) -> None:
    fake_gemini.enqueue(200, image_body(DRAWN))

    await draw_child(make_brain(), child=Child(name="x", desired_gender=desired_gender))

    [request] = fake_gemini.requests
    assert word in request.prompt


async def test_a_webp_parent_photo_is_sent_as_webp(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, image_body(DRAWN))

    await draw_child(make_brain(), user_photo=WEBP)

    [request] = fake_gemini.requests
    assert request.inline_images == [("image/webp", WEBP), ("image/png", PNG)]


async def test_a_parent_image_of_unknown_format_fails_before_any_request(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    with pytest.raises(BrainError, match="user photo is not a PNG, JPEG or WebP"):
        await draw_child(make_brain(), user_photo=b"GIF89a not supported")

    assert fake_gemini.requests == []


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (no_image_body("IMAGE_SAFETY"), "IMAGE_SAFETY"),
        (no_image_body("NO_IMAGE"), "NO_IMAGE"),
        (no_image_body("SAFETY", text="I can't help with that."), "SAFETY"),
        (image_body(DRAWN, finish_reason="IMAGE_PROHIBITED_CONTENT"), "IMAGE_PROHIBITED"),
        (safety_blocked_body(), "blocked"),
        ({"candidates": []}, "no candidates"),
        (text_body("Here is a description instead of an image."), "no image"),
        (image_body(b"", "image/png"), "no image"),
        (image_body(DRAWN, "application/octet-stream"), "no image"),
        (no_image_body("STOP"), "no image"),
    ],
    ids=[
        "image-safety",
        "no-image",
        "safety",
        "image-prohibited",
        "prompt-blocked",
        "no-candidates",
        "text-only",
        "empty-image",
        "not-an-image",
        "no-parts",
    ],
)
async def test_refusals_and_imageless_answers_raise_brain_error_without_retrying(
    fake_gemini: FakeGemini, make_brain: BrainFactory, body: dict[str, Any], reason: str
) -> None:
    fake_gemini.enqueue(200, body)

    with pytest.raises(BrainError, match=reason) as caught:
        await draw_child(make_brain())

    assert not isinstance(caught.value, BrainTimeout)
    assert len(fake_gemini.requests) == 1


async def test_a_partner_refusal_raises_brain_error_too(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, no_image_body("IMAGE_SAFETY"))

    with pytest.raises(BrainError, match="IMAGE_SAFETY"):
        await make_brain().partner_image(description="やさしい顔", gender=None)


# ------------------------------------------------------------------------------ failures
async def test_a_503_then_success_is_retried(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE"))
    fake_gemini.enqueue(200, image_body(DRAWN))

    image = await draw_child(make_brain())

    assert image.data == DRAWN
    assert len(fake_gemini.requests) == 2
    assert fake_gemini.requests[1].inline_images == [("image/jpeg", JPEG), ("image/png", PNG)]


async def test_a_hanging_server_raises_brain_timeout(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.hang = True

    with pytest.raises(BrainTimeout):
        await make_brain(max_retries=0).partner_image(description="やさしい顔", gender="男性")

    assert len(fake_gemini.requests) == 1


async def test_a_longer_image_timeout_is_not_cut_short_by_the_clients_http_timeout(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    # The client was built with TIMEOUT; the image brain allows more, per request.
    fake_gemini.latency = TIMEOUT * 2
    fake_gemini.enqueue(200, image_body(DRAWN))

    image = await make_brain(timeout_seconds=TIMEOUT * 6, max_retries=0).partner_image(
        description="やさしい顔", gender="女性"
    )

    assert image.data == DRAWN


async def test_aclose_leaves_the_shared_client_usable(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    brain = make_brain()
    await brain.aclose()
    fake_gemini.enqueue(200, image_body(DRAWN))

    image = await brain.partner_image(description="やさしい顔", gender="女性")

    assert image.data == DRAWN
