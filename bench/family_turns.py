"""A family turn and the confirming turn, as multiples of one LLM call.

The real Gemini adapters talk to a fake Gemini (its own process) that answers after a fixed
latency. A family turn is one structured call for every member's line plus the trip, so it
should cost about one latency (target <= 1.3x: members do not wait on each other). The
confirming turn is that call plus the story and the letter written side by side (target <=
2.3x). "One LLM call" is the fake's latency, measured here as one interview turn.

    python bench/family_turns.py [--latency 1.0] [--rounds 3] [--store file|redis]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import gemini_hera

TIMEOUT = 120


def timed(client: httpx.Client, path: str, message: str | None = None) -> float:
    started = time.perf_counter()
    body = {"message": message} if message is not None else None
    response = client.post(path, json=body)
    response.raise_for_status()
    return time.perf_counter() - started


def one_round(client: httpx.Client) -> tuple[float, float, float]:
    sid = client.post("/api/sessions").json()["session_id"]
    base = f"/api/sessions/{sid}"
    interview = timed(client, f"{base}/messages", "32歳の女性です。")  # one call, completes
    client.post(f"{base}/complete").raise_for_status()
    proposal = timed(client, f"{base}/family/messages", "沖縄で海水浴と水族館に行きたい！")
    confirm = timed(client, f"{base}/family/messages", "いいね、そうしよう！")
    status = client.get(f"{base}/family/status").json()
    if not status["conversation_complete"] or not status["family_plan"]["story"]:
        raise SystemExit(f"the plan was not confirmed: {status}")
    return interview, proposal, confirm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=["file", "redis"], default="file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    with (
        gemini_hera(args.latency, store=args.store, redis_url=args.redis_url) as (url, answered),
        httpx.Client(base_url=url, timeout=TIMEOUT) as client,
    ):
        one_round(client)  # warm-up
        rounds = [one_round(client) for _ in range(args.rounds)]
    calls = answered[0]
    one_call = min(r[0] for r in rounds)
    proposal = min(r[1] for r in rounds)
    confirm = min(r[2] for r in rounds)
    print(f"store={args.store} fake latency={args.latency:.2f}s rounds={args.rounds} (best of)")
    print(f"one LLM call (interview turn): {one_call:.3f} s")
    print(
        f"family turn (proposal)       : {proposal:.3f} s = {proposal / one_call:.2f}x  (target <= 1.3x)"
    )
    print(
        f"confirming turn (story+letter): {confirm:.3f} s = {confirm / one_call:.2f}x  (target <= 2.3x)"
    )
    print(
        f"LLM requests in all          : {calls} for {args.rounds + 1} rounds (5 per round: interview, 2 family turns, story, letter)"
    )


if __name__ == "__main__":
    main()
