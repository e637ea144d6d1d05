"""What both offline lexicons share: the scripts of Japanese text, the text the brains read,
and how a word list becomes one regex alternation."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Final

HIRAGANA: Final = "\u3041-\u3096"  # ぁ-ゖ
KATAKANA: Final = "\u30a1-\u30fa\u30fc"  # ァ-ヺ and the long-vowel mark ー
KANJI: Final = "\u4e00-\u9fff々"
_SPACES: Final = re.compile(r"[ \t]+")


def nfkc(message: str) -> str:
    """NFKC (３２ -> 32, ！ -> !) and single spaces: the text the brains read."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", message)).strip()


def alternation(words: Iterable[str]) -> str:
    """The words as one regex alternation, longest first (so 東京都 is tried before 東京)."""
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))
