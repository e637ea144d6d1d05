"""Brains a test holds and hands to the app through its front door (`Replacements`).

`Switchable` forwards every call to its `inner` brain, which the test may swap at any time
(a model that starts failing, and recovers), and records the name of each model call, so a
test can prove that a refused request reached no model."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.brains.offline.family import OfflineFamilyBrain
from app.brains.offline.images import OfflineImageBrain
from app.brains.offline.interview import OfflineInterviewBrain
from app.brains.offline.japanese import JapaneseAnalyser
from app.container import Brains, Replacements

# Every call of a brain port that would reach a model (offline or Gemini).
MODEL_CALLS = frozenset(
    {"interview_turn", "family_turn", "write_story", "write_letter", "partner_image", "child_image"}
)


@functools.cache
def shared_analyser() -> JapaneseAnalyser:
    """The one Japanese analyser of this test process, as the app has one per process
    (loading the dictionary takes ~20 ms and ~40 MB: never once per test)."""
    return JapaneseAnalyser.load()


class Switchable:
    def __init__(self, inner: Any, calls: list[str]) -> None:
        self.inner = inner
        self.calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in MODEL_CALLS:
            return attr
        return self._counted(name, attr)

    def _counted(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


@dataclass
class TestBrains:
    """The offline brains, each behind a switch; `calls` lists every model call made."""

    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.interview = Switchable(OfflineInterviewBrain(shared_analyser()), self.calls)
        self.family = Switchable(OfflineFamilyBrain(), self.calls)
        self.images = Switchable(OfflineImageBrain(), self.calls)

    def replacements(self) -> Replacements:
        brains = Brains(self.interview, self.family, self.images)  # type: ignore[arg-type]
        return Replacements(brains=brains)
