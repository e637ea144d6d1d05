"""The fake Gemini in a process of its own, so a benchmark's client does not share its GIL.

Prints its base URL, serves until stdin closes, then prints how many requests it answered.
    python bench/_fake_gemini_proc.py LATENCY_SECONDS
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_gemini import start_fake_gemini


def main() -> None:
    fake = start_fake_gemini()
    fake.latency = float(sys.argv[1])
    print(fake.base_url, flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    print(len(fake.requests), flush=True)
    fake.stop()


if __name__ == "__main__":
    main()
