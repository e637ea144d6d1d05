"""The fake Gemini of `load_journeys.py`, in a process of its own (its CPU is not Hera's).

It plays a model that follows the scripted user of `load_journeys.py` through a whole journey:
each interview turn extracts exactly the fields that turn's message says (so the profile is
complete after the sixth message, not the first), each family turn every member's line plus
the trip the message names, "accept" when the user agrees to the proposal, then a story and a
letter, and a PNG portrait from the image model (the request path names the model). Text calls
answer after `--text-latency` seconds, image calls after `--image-latency`; with `--stream`
streamed calls send their text in pieces (the first after half the text latency, then one
piece every `--stream-interval` seconds).

Prints its base URL, serves until stdin closes, then prints a JSON object of the calls it
answered by kind (interview, family, story, letter, image, unknown).
    python bench/_journey_gemini_proc.py --text-model M --image-model I [--text-latency 0.8]
                                         [--image-latency 2.0] [--image-px 1024] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web
from PIL import Image, ImageFilter

from tests.support.fake_gemini import (
    FakeGemini,
    JSONDict,
    RecordedRequest,
    error_body,
    image_body,
    json_text_body,
)

MESSAGE_HEADER = "## 利用者の今回のメッセージ\n"  # the last section of both chat prompts

# What a model extracts from each scripted interview message (`load_journeys.INTERVIEW`).
EXTRACTED: dict[str, dict[str, Any]] = {
    "こんにちは！32歳の女性です。独身です。": {
        "age": 32, "gender": "女性", "relationship_status": "single"},
    "東京に住んでいます。年収は500万円くらいです。": {
        "location": "東京", "income_range": "500万円"},
    "性格は社交的で、好奇心が強いほうです。几帳面だとよく言われます。": {
        "user_personality_traits": {
            "extraversion": 0.8, "openness": 0.8, "conscientiousness": 0.75}},
    "理想の相手の顔は、優しい目をした笑顔の素敵な人です。": {
        "partner_face_description": "優しい目をした笑顔の素敵な人"},
    "理想の相手の名前は健太さんで、穏やかで優しい性格、背が高くて黒髪の人がいいです。": {
        "ideal_partner": {"name": "健太", "temperament": "穏やかで優しい",
                          "appearance": "背が高くて黒髪"}},
    "子どもは男の子と女の子が欲しいです。名前は太郎と花子にしたいです。": {
        "children_info": [{"name": "太郎", "desired_gender": "男の子"},
                          {"name": "花子", "desired_gender": "女の子"}]},
}  # fmt: skip
# The trip each scripted family message names, and the message that accepts the proposal.
TRIPS: dict[str, dict[str, Any]] = {
    "沖縄に行きたいな！": {"destination": "沖縄", "activities": []},
    "海で泳いだり、水族館に行ったりしたい！": {
        "destination": None,
        "activities": ["海水浴", "水族館"],
    },
}
ACCEPT = "いいね、そうしよう！"
# Answers about as long as a real model's (the story and letter within the product's ranges).
REPLY = (
    "ありがとうございます。お話を伺えてとても嬉しいです。あなたの毎日の様子が目に浮かぶようです。"
    "次に、もう少しだけ教えてください。どんなことでも、思いつくままにお話しいただければ大丈夫です。"
)
LINE = "いいね！みんなで行けたら本当に楽しそう。どんなことをしたいか、もっと聞かせてね。"
STORY = "家族の物語の一節。" * 110  # 990 characters
LETTER = "未来の家族からあなたへの手紙。" * 50  # 750 characters


def portrait_png(side: int) -> bytes:
    """A photo-like PNG (gradients plus noise): about 1.4 MB at 1024 px, like a real one."""
    noise = Image.effect_noise((side, side), 16)
    grad = Image.linear_gradient("L").resize((side, side))
    channels = (
        Image.blend(grad, noise, 0.3),
        Image.blend(grad.rotate(90), noise, 0.3),
        Image.blend(grad.rotate(180), noise.filter(ImageFilter.BoxBlur(2)), 0.3),
    )
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, "PNG")
    return out.getvalue()


def _message(request: dict[str, Any]) -> str:
    texts = [
        part.get("text") or ""
        for content in request.get("contents") or []
        for part in content.get("parts") or []
    ]
    prompt = "\n".join(texts)
    return prompt.rsplit(MESSAGE_HEADER, 1)[-1].strip() if MESSAGE_HEADER in prompt else ""


def _schema_keys(request: dict[str, Any]) -> dict[str, Any]:
    config = request.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("response_json_schema") or {}
    return schema.get("properties") or {}


class JourneyGemini(FakeGemini):
    """The fake answering by model (the request path) and schema, with the image model's own
    latency; it counts calls by kind and keeps no request bodies (a child-image request
    carries two images: megabytes per call)."""

    def __init__(self, *, text_model: str, image_model: str, image_latency: float, png: bytes):
        super().__init__()
        self.text_model, self.image_model = text_model, image_model
        self.image_latency, self.png = image_latency, png
        self.calls: Counter[str] = Counter()

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        with self._cond:
            self._requests.clear()
        image = record.model == self.image_model
        if not image and record.model != self.text_model:
            return web.json_response(error_body(404, "NOT_FOUND", "no such model"), status=404)
        await asyncio.sleep(self.image_latency if image else self.latency)
        kind, answer = self._answer_for(record.json or {}, image=image)
        self.calls[kind] += 1
        if answer is None:
            body = error_body(400, "INVALID_ARGUMENT", f"the fake does not know this {kind} call")
            return web.json_response(body, status=400)
        if record.streamed:
            return await self._stream(request, answer)
        return web.json_response(answer, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    def _answer_for(self, request: dict[str, Any], *, image: bool) -> tuple[str, JSONDict | None]:
        if image:
            return "image", image_body(self.png, "image/png")
        props = _schema_keys(request)
        if "reply" in props:
            extracted = EXTRACTED.get(_message(request), {})
            return "interview", json_text_body({"reply": REPLY, "extracted": extracted})
        if "lines" in props:
            names = props["lines"]["items"]["properties"]["speaker"].get("enum") or []
            message = _message(request)
            trip = TRIPS.get(message, {"destination": None, "activities": []})
            return "family", json_text_body(
                {
                    "lines": [{"speaker": name, "message": LINE} for name in names],
                    "trip_info": trip,
                    "proposal_answer": "accept" if message == ACCEPT else None,
                }
            )
        if "story" in props:
            return "story", json_text_body({"story": STORY})
        if "letter" in props:
            return "letter", json_text_body({"letter": LETTER})
        return "unknown", None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--text-model", required=True)
    parser.add_argument("--image-model", required=True)
    parser.add_argument("--text-latency", type=float, default=0.8)
    parser.add_argument("--image-latency", type=float, default=2.0)
    parser.add_argument("--image-px", type=int, default=1024)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--stream-piece-chars", type=int, default=48)
    parser.add_argument("--stream-interval", type=float, default=0.05)
    args = parser.parse_args()
    fake = JourneyGemini(
        text_model=args.text_model,
        image_model=args.image_model,
        image_latency=args.image_latency,
        png=portrait_png(args.image_px),
    ).start()
    if args.stream:
        # A streamed call: half the latency before the first piece, then a steady pace.
        fake.latency = args.text_latency / 2
        fake.stream_first_delay = 0.0
        fake.stream_interval = args.stream_interval
        fake.stream_piece_chars = args.stream_piece_chars
    else:
        fake.latency = args.text_latency
    print(fake.base_url, flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    print(json.dumps(dict(fake.calls)), flush=True)
    fake.stop()


if __name__ == "__main__":
    main()
