"""The offline brain's Japanese morphological analyser: SudachiPy with the small SudachiDict.

Built once per process by the composition root (loading the dictionary takes ~20 ms and
~40 MB) and shared by every session: it holds only the read-only dictionary, and each call
makes its own tokenizer (a few microseconds), so calls from several threads never share one.
The dictionary comes with the `sudachidict-small` package; nothing is fetched at run time,
and the same text always gives the same morphemes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PLACE_POS = ("名詞", "固有名詞", "地名")
PERSON_POS = ("名詞", "固有名詞", "人名")


@dataclass(frozen=True, slots=True)
class Morpheme:
    surface: str  # as written
    pos: tuple[str, ...]  # e.g. ("名詞", "固有名詞", "地名", "一般", "*", "*")
    normal: str  # normalised form: 子ども/こども -> 子供, 三十二 -> 32, 五百万 -> 5000000
    base: str  # dictionary form: 住ん -> 住む
    begin: int = 0  # offset in the analysed text

    @property
    def is_place(self) -> bool:
        return self.pos[:3] == PLACE_POS

    @property
    def is_person(self) -> bool:
        return self.pos[:3] == PERSON_POS

    @property
    def is_proper(self) -> bool:
        return self.pos[:2] == ("名詞", "固有名詞")

    @property
    def is_noun(self) -> bool:
        return self.pos[0] == "名詞"

    @property
    def is_particle(self) -> bool:
        return self.pos[0] == "助詞"

    @property
    def is_symbol(self) -> bool:
        return self.pos[0] in ("補助記号", "空白")

    @property
    def number(self) -> float | None:
        """The value of a numeral (三十二 -> 32.0, 1.5億 -> 150000000.0), else None."""
        if self.pos[1] != "数詞":
            return None
        try:
            return float(self.normal)
        except ValueError:
            return None


class JapaneseAnalyser:
    """Splits text into morphemes (SudachiPy, split mode C: the longest units)."""

    __slots__ = ("_dictionary",)

    def __init__(self, dictionary: Any) -> None:
        self._dictionary = dictionary

    @classmethod
    def load(cls) -> JapaneseAnalyser:
        from sudachipy import Dictionary  # imported here: no work at import time

        return cls(Dictionary(dict="small"))

    def analyse(self, text: str) -> tuple[Morpheme, ...]:
        tokenizer = self._dictionary.tokenizer(mode="C")
        return tuple(
            Morpheme(
                surface=str(m.surface()),
                pos=tuple(m.part_of_speech()),
                normal=str(m.normalized_form()),
                base=str(m.dictionary_form()),
                begin=int(m.begin()),
            )
            for m in tokenizer.tokenize(text)
        )

    def close(self) -> None:
        self._dictionary.close()
