"""Per-field precision and recall of the offline interviewer over tests/offline_corpus/.

python bench/offline_corpus.py [--failures]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.brains.offline.japanese import JapaneseAnalyser
from tests.offline_corpus.scoring import load_corpus, score, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--failures", action="store_true", help="list every miss and wrong value")
    args = parser.parse_args()
    corpus = load_corpus()
    analyser = JapaneseAnalyser.load()
    try:
        scores = score(corpus, analyser)
    finally:
        analyser.close()
    print(f"{len(corpus)} messages")
    print("\n".join(table(scores)))
    if args.failures:
        for name, s in scores.items():
            for failure in s.failures:
                print(f"{name}: {failure}")


if __name__ == "__main__":
    main()
