"""Scores the offline interview brain over the corpus: per field, precision (a value it
yields is right) and recall (a value the message states is yielded, and right).

Every scored field a message yields is checked: against `expect` when listed there, else it
counts as a wrong value (the corpus lists every scored field a message states).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.brains.offline.interview import Topic, parse_message
from app.brains.offline.japanese import JapaneseAnalyser
from app.domain.profile import Profile

CORPUS_DIR = Path(__file__).parent
JSON = dict[str, Any]
PARTICLES = tuple("のはがをにで、,")


def load_corpus() -> list[JSON]:
    entries: list[JSON] = []
    for path in sorted(CORPUS_DIR.glob("*.yaml")):
        for i, entry in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            entries.append({**entry, "id": f"{path.stem}:{i + 1}"})
    return entries


def _partner(out: JSON) -> JSON:
    stored = Profile.from_untrusted(out).stored()
    return dict(stored.get("current_partner") or stored.get("ideal_partner") or {})


# Each scored field: how to read it from what the brain yields, and when a value is right.
def _traits(value: JSON, want: JSON) -> bool:
    return set(value) == set(want) and all(
        (value[t] > 0.5) == (level == "high") for t, level in want.items()
    )


def _contains_all(value: str, want: list[str]) -> bool:
    return all(w in value for w in want)


def _face(value: str, want: list[str]) -> bool:
    return _contains_all(value, want) and not value.startswith(PARTICLES)


def _children(value: list[JSON], want: list[list[str | None]]) -> bool:
    got = sorted((c.get("desired_gender") or "", c.get("name") or "") for c in value)
    return got == sorted((g or "", n or "") for g, n in want)


def _equal(value: Any, want: Any) -> bool:
    return value in want if isinstance(want, list) else value == want


Reader = Callable[[JSON], Any]
FIELDS: dict[str, tuple[Reader, Callable[[Any, Any], bool]]] = {
    "age": (lambda o: o.get("age"), _equal),
    "gender": (lambda o: o.get("gender"), _equal),
    "relationship_status": (lambda o: o.get("relationship_status"), _equal),
    "location": (lambda o: o.get("location"), _equal),
    "income_range": (lambda o: o.get("income_range"), _equal),
    "traits": (lambda o: o.get("user_personality_traits"), _traits),
    "partner_name": (lambda o: _partner(o).get("name"), _equal),
    "partner_temperament": (lambda o: _partner(o).get("temperament"), _contains_all),
    "partner_appearance": (lambda o: _partner(o).get("appearance"), _contains_all),
    "partner_face": (lambda o: o.get("partner_face_description"), _face),
    "children": (lambda o: o.get("children_info"), _children),
}


@dataclass
class Score:
    right: int = 0  # yielded and right
    wrong: int = 0  # yielded but wrong, or yielded when the message does not state it
    missed: int = 0  # stated but not yielded (or yielded wrong)
    failures: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.right / (self.right + self.wrong) if self.right + self.wrong else 1.0

    @property
    def recall(self) -> float:
        return self.right / (self.right + self.missed) if self.right + self.missed else 1.0


def yielded(entry: JSON, analyser: JapaneseAnalyser) -> JSON:
    profile = Profile.from_untrusted(entry.get("known") or {})
    topic = Topic(entry.get("asked"))
    out = parse_message(entry["say"], profile=profile, topic=topic, analyser=analyser)
    if "children_info" in out:  # news about children: the list as the agent stores it
        merged, _ = profile.merge(Profile.from_untrusted({"children_info": out["children_info"]}))
        out["children_info"] = merged.stored()["children_info"]
    return out


def score(entries: list[JSON], analyser: JapaneseAnalyser) -> dict[str, Score]:
    scores = {name: Score() for name in FIELDS}
    for entry in entries:
        out = yielded(entry, analyser)
        expect = entry.get("expect") or {}
        for name, (read, right) in FIELDS.items():
            value, want, s = read(out), expect.get(name), scores[name]
            got = value not in (None, "", [], {})
            if got and want is not None and right(value, want):
                s.right += 1
                continue
            if got:
                s.wrong += 1
            if want is not None:
                s.missed += 1
            if got or want is not None:
                s.failures.append(f"{entry['id']} {entry['say']!r}: got {value!r}, want {want!r}")
    return scores


def table(scores: dict[str, Score]) -> Iterator[str]:
    yield f"{'field':<22}{'precision':>10}{'recall':>8}{'right':>7}{'wrong':>7}{'missed':>8}"
    for name, s in scores.items():
        yield (
            f"{name:<22}{s.precision:>10.3f}{s.recall:>8.3f}{s.right:>7}{s.wrong:>7}{s.missed:>8}"
        )
