"""The Gemini call machinery: `GeminiCaller` holds it all; the brains beside this file
(`interview.py`, `family.py`, `images.py`) only build prompts and read answers. One
`genai.Client` per process is built and closed by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypedDict, TypeVar, Unpack

import aiohttp
import httpx
import jiter
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from app.agents.brains import BrainError, BrainTimeout, GeneratedImage, JSONDict, Overloaded
from app.brains.slots import ModelSlots

logger = logging.getLogger(__name__)
T = TypeVar("T")
PartialSink = Callable[[Any], None]  # the answer's JSON so far (incomplete), as it grows

_TRANSIENT_HTTP_CODES: Final = frozenset({429, 500, 502, 503, 504})
# Normal ends; any other finish reason (SAFETY, IMAGE_SAFETY, NO_IMAGE ...) means unusable.
_USABLE_FINISH_REASONS: Final = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})
_TRANSIENT_ERRORS: Final = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    httpx.TransportError,
    ConnectionError,
)
_HISTORY_WINDOW: Final = 20
_BACKOFF_CAP_SECONDS: Final = 2.0


def create_gemini_client(
    *, api_key: str, base_url: str | None, timeout_seconds: float
) -> genai.Client:
    """The process's one client; close it with `close_gemini_client` in the lifespan."""
    options = types.HttpOptions(
        base_url=base_url,
        # HttpOptions.timeout is in milliseconds; without it a request can hang forever.
        timeout=_milliseconds(timeout_seconds),
        # attempts=1 disables tenacity *and* the aiohttp path's implicit 1-10 s sleep-and-retry
        # on connection errors, which only stays off while retry_options is set.
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    # Explicit, so GOOGLE_GENAI_USE_VERTEXAI cannot silently switch the API (and the auth).
    return genai.Client(vertexai=False, api_key=api_key, http_options=options)


async def close_gemini_client(client: genai.Client) -> None:
    """Close the aiohttp/httpx sessions of the async client, then the sync one the SDK built."""
    await client.aio.aclose()
    client.close()


@dataclass(frozen=True, kw_only=True)
class GeminiCaller:
    """One model behind a timeout, bounded retries with jittered backoff, and model slots.

    The slots (`slots.py`) are process-wide: with aiohttp installed the SDK's connector has no
    connection limit. The SDK's retries are off; only transient failures are retried, here.
    Answers become JSON / an image, or `BrainError` (`BrainTimeout` when the last attempt timed
    out); a call shed by the slots raises `Overloaded` at once.
    """

    client: genai.Client
    model: str
    timeout_seconds: float
    max_retries: int
    slots: ModelSlots
    backoff_base_seconds: float = 0.2
    on_retry: Callable[[str], None] | None = None  # told the purpose of each retried call

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0 or self.max_retries < 0:
            raise ValueError("timeout_seconds must be > 0 and max_retries >= 0")

    async def generate_json(
        self,
        *,
        purpose: str,
        system: str,
        contents: types.ContentListUnion,
        schema: JSONDict,
        on_partial: PartialSink | None = None,
    ) -> JSONDict:
        """One structured-output call; returns the answer's JSON object.

        With `on_partial` the answer is streamed: each time more of it arrives, the JSON
        read so far (an incomplete object, its last string cut where the text ends) goes to
        `on_partial`. Only the complete answer is returned, and only it is to be trusted. A
        stream that fails after its first piece is not retried (what was shown cannot be
        taken back): it is a BrainError."""
        config = self._config(
            system_instruction=system,
            response_mime_type="application/json",
            # A plain JSON schema: response_schema chokes on dict-typed fields and $ref.
            response_json_schema=schema,
        )
        if on_partial is None:
            response = await self._with_retries(
                purpose,
                lambda: self.client.aio.models.generate_content(
                    model=self.model, contents=contents, config=config
                ),
            )
            return _parse_json_object(_response_text(response))
        began: list[bool] = []

        async def attempt() -> str:
            text = ""  # the answer so far: all a stream keeps (its partial reads are dropped)
            stream = await self.client.aio.models.generate_content_stream(
                model=self.model, contents=contents, config=config
            )
            async for chunk in stream:
                if piece := _chunk_text(chunk):
                    text += piece
                    began.append(True)
                    _hand_on(text, on_partial)
            if not text.strip():
                raise BrainError("Gemini returned an empty answer")
            return text

        return _parse_json_object(
            await self._with_retries(purpose, attempt, may_retry=lambda: not began)
        )

    async def generate_image(
        self, *, purpose: str, contents: types.ContentListUnion, aspect_ratio: str = "1:1"
    ) -> GeneratedImage:
        """One image-generation call; returns the first image the model drew."""
        config = self._config(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=aspect_ratio),
        )
        response = await self._with_retries(
            purpose,
            lambda: self.client.aio.models.generate_content(
                model=self.model, contents=contents, config=config
            ),
        )
        return _response_image(response, self.model)

    def _config(self, **fields: Any) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            # Per request, so a longer timeout (images) is not cut by the client's HTTP one.
            http_options=types.HttpOptions(timeout=_milliseconds(self.timeout_seconds)),
            # Both would let one call become several HTTP requests behind our back.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            automatic_continuation=False,
            **fields,
        )

    async def _with_retries(
        self,
        purpose: str,
        attempt_once: Callable[[], Awaitable[T]],
        *,
        may_retry: Callable[[], bool] = lambda: True,
    ) -> T:
        """One call in a model slot under the timeout; transient failures are tried again
        (while `may_retry` says so) with jittered backoff."""
        attempts = 1 + self.max_retries
        for attempt in range(1, attempts + 1):
            try:
                # Per attempt, not across the backoff sleeps, so retries do not starve others.
                async with self.slots, asyncio.timeout(self.timeout_seconds):
                    return await attempt_once()
            except (Overloaded, BrainError):
                raise  # shed at once, or an answer that is unusable: no retry
            except Exception as exc:
                # The server's message may quote the prompt, so it stays at DEBUG.
                logger.debug("gemini %s attempt %d failed: %r", purpose, attempt, exc)
                if not _is_transient(exc):
                    raise BrainError(f"Gemini {purpose} call failed: {_describe(exc)}") from exc
                if attempt == attempts or not may_retry():
                    if _is_timeout(exc):
                        raise BrainTimeout(
                            f"Gemini {purpose} call timed out after {self.timeout_seconds:g} s "
                            f"({attempts} attempt(s))"
                        ) from exc
                    raise BrainError(
                        f"Gemini {purpose} call failed after {attempts} attempt(s): "
                        f"{_describe(exc)}"
                    ) from exc
                # Exponential with jitter (half fixed, half random) so a burst of 429s spreads.
                ceiling = min(_BACKOFF_CAP_SECONDS, self.backoff_base_seconds * 2 ** (attempt - 1))
                delay = ceiling / 2 + random.uniform(0, ceiling / 2)
                if self.on_retry is not None:
                    self.on_retry(purpose)
                logger.warning(
                    "gemini %s attempt %d/%d failed (%s); retrying in %.2f s",
                    purpose,
                    attempt,
                    attempts,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


class TextTail:
    """Hands a sink only the new end of a text that grows as the answer streams in. Blanks
    at either end are held back (the whole answer's are stripped), so the pieces joined are
    the stripped text; blanks inside go out once text follows them."""

    __slots__ = ("_sent", "_sink")

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._sent = 0

    def update(self, text: object) -> None:
        if not isinstance(text, str):
            return
        text = text.strip()
        if len(text) > self._sent:
            self._sink(text[self._sent :])
            self._sent = len(text)


def field_tail(key: str, sink: Callable[[str], None] | None) -> PartialSink | None:
    """A partial-answer sink streaming one string field of the answer object to `sink`."""
    if sink is None:
        return None
    tail = TextTail(sink)
    return lambda partial: tail.update(partial.get(key) if isinstance(partial, dict) else None)


class GeminiOptions(TypedDict):
    """`GeminiCaller`'s keywords, which every Gemini brain takes too."""

    client: genai.Client
    model: str
    timeout_seconds: float
    max_retries: int
    slots: ModelSlots
    backoff_base_seconds: NotRequired[float]
    on_retry: NotRequired[Callable[[str], None] | None]


class GeminiBrainBase:
    """A Gemini brain: built with `GeminiCaller`'s keywords, it makes its calls through one."""

    def __init__(self, **options: Unpack[GeminiOptions]) -> None:
        self._caller = GeminiCaller(**options)


# ------------------------------------------------------------------------------ prompts
def recent_history(history: list[JSONDict], message: str) -> list[JSONDict]:
    """The last entries of a chat history, without the current message if already appended."""
    recent = history[-_HISTORY_WINDOW:]
    if recent and recent[-1].get("speaker") == "user" and recent[-1].get("message") == message:
        recent = recent[:-1]
    return recent


def prompt_sections(sections: dict[str, list[str]]) -> str:
    """A prompt of `## title` sections, one line per item, a blank line between sections."""
    return "\n\n".join(f"## {title}\n" + "\n".join(lines) for title, lines in sections.items())


# ------------------------------------------------------------------------------ responses
def _answer_parts(response: types.GenerateContentResponse, what: str) -> list[types.Part]:
    """The first candidate's non-thought parts, or BrainError saying why nothing is usable:
    safety blocks are HTTP 200 without candidates, MAX_TOKENS truncates, images are refused
    with finish reasons (IMAGE_SAFETY, NO_IMAGE ...)."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise BrainError(f"Gemini blocked the prompt ({_enum_name(feedback.block_reason)})")
    if not response.candidates:
        raise BrainError("Gemini returned no candidates")
    candidate = response.candidates[0]
    reason = _enum_name(candidate.finish_reason) if candidate.finish_reason else None
    if reason == "MAX_TOKENS":
        raise BrainError("Gemini's answer was cut off at the output token limit (MAX_TOKENS)")
    if reason is not None and reason not in _USABLE_FINISH_REASONS:
        raise BrainError(f"Gemini stopped without a usable {what} (finish reason {reason})")
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    return [part for part in parts if not part.thought]


def _chunk_text(chunk: types.GenerateContentResponse) -> str:
    """The text of one streamed piece; a block or an unusable finish reason (which come on
    a piece too) is a BrainError at once."""
    if not chunk.candidates and (
        chunk.prompt_feedback is None or not chunk.prompt_feedback.block_reason
    ):
        return ""  # a piece with only usage metadata
    return "".join(part.text for part in _answer_parts(chunk, "answer") if part.text)


def _hand_on(text: str, on_partial: PartialSink) -> None:
    """The JSON value an incomplete answer holds so far (its last string cut where the text
    ends) to `on_partial`; nothing while not even that can be read."""
    try:
        partial = jiter.from_json(text.encode(), partial_mode="trailing-strings")
    except ValueError:
        return
    on_partial(partial)


def _response_text(response: types.GenerateContentResponse) -> str:
    text = "".join(part.text for part in _answer_parts(response, "answer") if part.text)
    if not text.strip():
        raise BrainError("Gemini returned an empty answer")
    return text


def _response_image(response: types.GenerateContentResponse, model: str) -> GeneratedImage:
    """The answer's first inline image (bytes and its content type); never a placeholder."""
    for part in _answer_parts(response, "image"):
        blob = part.inline_data
        if blob is None or not blob.data:
            continue
        content_type = (blob.mime_type or "").lower()
        if content_type.startswith("image/"):
            meta = {"engine": "gemini", "model": model}
            return GeneratedImage(data=blob.data, content_type=content_type, meta=meta)
    raise BrainError("Gemini returned no image")


def _parse_json_object(text: str) -> JSONDict:
    try:
        value: Any = json.loads(text)
    except ValueError as exc:
        raise BrainError("Gemini's answer is not valid JSON") from exc
    if not isinstance(value, dict):
        raise BrainError(f"Gemini's answer is JSON but not an object ({type(value).__name__})")
    return value


def _enum_name(value: object) -> str:
    # The SDK gives enum members, but plain strings for values newer than the SDK.
    return str(getattr(value, "value", value))


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# ------------------------------------------------------------------------------ errors
def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | httpx.TimeoutException)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code in _TRANSIENT_HTTP_CODES
    return _is_timeout(exc) or isinstance(exc, _TRANSIENT_ERRORS)


def _describe(exc: BaseException) -> str:
    """A short, log-safe description: no server message bodies (they may echo the prompt)."""
    if isinstance(exc, genai_errors.APIError):
        return f"HTTP {exc.code} {exc.status or ''}".rstrip()
    if _is_timeout(exc):
        return "timeout"
    return type(exc).__name__
