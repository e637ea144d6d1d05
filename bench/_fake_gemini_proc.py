"""The fake Gemini in a process of its own, so a benchmark's client does not share its GIL.

Prints its base URL, serves until stdin closes, then prints how many requests it answered.
It answers by the response schema it is asked for: a complete profile for an interview turn,
every member's line plus a trip for a family turn (always "accept": the brain ignores it unless
a proposal is pending), and a story or a letter.
    python bench/_fake_gemini_proc.py LATENCY_SECONDS
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_gemini import Body, json_text_body, start_fake_gemini

PROFILE = {
    "age": 32, "gender": "女性", "relationship_status": "single", "location": "東京",
    "income_range": "500万円",
    "user_personality_traits": {"openness": 0.8, "extraversion": 0.7},
    "partner_face_description": "優しい目の人",
    "ideal_partner": {"name": "健太", "temperament": "穏やか", "appearance": "背が高い"},
    "children_info": [{"name": "太郎", "desired_gender": "男の子"}],
}  # fmt: skip


def by_schema(request: dict[str, Any]) -> tuple[int, Body]:
    config = request.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("response_json_schema") or {}
    props = schema.get("properties") or {}
    if "lines" in props:
        names = props["lines"]["items"]["properties"]["speaker"].get("enum") or []
        return 200, json_text_body(
            {
                "lines": [{"speaker": n, "message": "楽しみだね！"} for n in names],
                "trip_info": {"destination": "沖縄", "activities": ["海水浴", "水族館"]},
                "proposal_answer": "accept",
            }
        )
    if "story" in props:
        return 200, json_text_body({"story": "家族の物語。" * 150})
    if "letter" in props:
        return 200, json_text_body({"letter": "未来の家族からの手紙。" * 70})
    return 200, json_text_body({"reply": "ありがとうございます。", "extracted": PROFILE})


def main() -> None:
    fake = start_fake_gemini()
    fake.latency = float(sys.argv[1])
    fake.responder = by_schema
    print(fake.base_url, flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    print(len(fake.requests), flush=True)
    fake.stop()


if __name__ == "__main__":
    main()
