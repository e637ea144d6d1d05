"""What the offline interviewer's Japanese analyser costs: start-up time, the process's added
memory (RSS), and CPU per interview turn for a ~300-character message (target <= 5 ms), plus
the analysis alone, and the message length and history length past which a turn passes
~1 ms (such turns run on a worker thread).

    python bench/offline_analyser_cost.py [--turns 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.brains.offline.interview import (
    THREAD_FROM_CHARS,
    THREAD_FROM_ENTRIES,
    OfflineInterviewBrain,
    compose_reply,
)
from app.brains.offline.japanese import JapaneseAnalyser
from app.domain.profile import Profile

MESSAGE = (
    "はじめまして。三十二歳の会社員で、女性です。今は独身で、東京都品川区に住んでいます。"
    "年収は500万円くらいで、貯金も少しずつしています。性格は人見知りだけど頑張り屋で、"
    "友達からはマイペースだねと言われます。休日はカメラを持って散歩するのが好きです。"
    "理想の相手は、優しくて穏やかな人。背が高くて、笑顔が素敵な人がいいです。"
    "子どもは二人欲しくて、男女一人ずつだと嬉しいです。名前はまだ考えていません。"
    "実家は静岡なので、年末年始は家族で帰省することが多いです。料理も得意なほうで、"
    "週末は作り置きをしています。最近はランニングも始めて、月に一度は友達と走っています。"
    "苦手なものは朝早く起きることくらいです。どうぞよろしくお願いします！"
)


def chat(entries: int, profile: Profile) -> list[dict[str, object]]:
    """A history of `entries`: short answers, each followed by Hera's next question."""
    missing = profile.missing_fields()
    history: list[dict[str, object]] = []
    for i in range(entries // 2):
        question = compose_reply(Profile(), profile, missing[i % len(missing) :])
        history += [
            {"speaker": "user", "message": "うーん"},
            {"speaker": "hera", "message": question},
        ]
    return history


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ms(fn: object, turns: int) -> float:
    assert callable(fn)
    start = time.process_time()
    for _ in range(turns):
        fn()
    return (time.process_time() - start) / turns * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args()

    before = rss_kib()
    start = time.perf_counter()
    analyser = JapaneseAnalyser.load()
    analyser.analyse("起動")
    loaded = time.perf_counter() - start
    after_load = rss_kib()

    brain = OfflineInterviewBrain(analyser)
    profile = Profile()
    missing = profile.missing_fields()
    message = MESSAGE[:300]

    def turn() -> None:
        brain.turn(message, profile, [], missing)

    cpu_ms(turn, 20)  # warm up
    per_turn = cpu_ms(turn, args.turns)
    per_analysis = cpu_ms(lambda: analyser.analyse(message), args.turns)
    after_turns = rss_kib()
    print(f"analyser start-up (import + dictionary): {loaded * 1000:.0f} ms")
    print(f"added RSS after loading: {(after_load - before) / 1024:.1f} MiB")
    print(
        f"added RSS after {args.turns * 2 + 20} turns/analyses: {(after_turns - before) / 1024:.1f} MiB"
    )
    print(f"message: {len(message)} characters")
    print(f"CPU per interview turn: {per_turn:.2f} ms (target <= 5 ms)")
    print(f"CPU per analysis alone: {per_analysis:.2f} ms")
    print(f"turns of {THREAD_FROM_CHARS}+ characters run on a worker thread")
    for chars in (20, 40, 80, 160):
        short = message[:chars]
        ms = cpu_ms(lambda short=short: brain.turn(short, profile, [], missing), args.turns)
        print(f"CPU per turn, {chars:>3} characters: {ms:.2f} ms")
    print(f"turns over {THREAD_FROM_ENTRIES}+ history entries run on a worker thread")
    for entries in (0, 100, 400, 1000, 4000):
        history = chat(entries, profile)
        ms = cpu_ms(lambda h=history: brain.turn("うーん", profile, h, missing), args.turns // 3)
        print(f"CPU per 3-character turn, {entries:>4} history entries: {ms:.2f} ms")
    analyser.close()


if __name__ == "__main__":
    main()
