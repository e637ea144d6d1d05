"""The offline interviewer over a corpus of everyday Japanese (tests/offline_corpus/*.yaml):
per field, precision >= 0.95 (a value it yields is right) and recall >= 0.85."""

from __future__ import annotations

from typing import Any

import pytest

from tests.offline_corpus.scoring import FIELDS, Score, load_corpus, score, yielded
from tests.support.brains import shared_analyser

CORPUS = load_corpus()


@pytest.fixture(scope="module")
def scores() -> dict[str, Score]:
    return score(CORPUS, shared_analyser())


def test_the_corpus_holds_at_least_150_messages_each_with_what_it_must_and_must_not_yield() -> None:
    assert len(CORPUS) >= 150
    assert all(e.get("expect") or e.get("absent") for e in CORPUS)
    listed = {f for e in CORPUS for f in [*(e.get("expect") or {}), *(e.get("absent") or [])]}
    assert listed <= set(FIELDS)


@pytest.mark.parametrize("field", FIELDS)
def test_each_field_is_read_with_precision_095_and_recall_085(
    scores: dict[str, Score], field: str
) -> None:
    s = scores[field]
    detail = "\n".join(s.failures)

    assert s.right + s.missed >= 5, f"too few messages state {field}"
    assert s.precision >= 0.95, detail
    assert s.recall >= 0.85, detail


NEGATIVES = [e for e in CORPUS if e.get("absent")]


@pytest.mark.parametrize("entry", NEGATIVES, ids=[e["id"] for e in NEGATIVES])
def test_a_field_a_message_must_not_yield_is_never_yielded(entry: dict[str, Any]) -> None:
    """Each denial, refusal, someone else's age or passing mention on its own: an average
    over the field could hide one or two of them."""
    out = yielded(entry, shared_analyser())
    for field in entry["absent"]:
        read, _ = FIELDS[field]
        assert read(out) in (None, "", [], {}), (field, entry["say"], read(out))
