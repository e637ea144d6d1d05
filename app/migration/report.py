"""Progress hooks, the per-run tallies and the summary lines the CLI prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from app.migration.legacy import LegacyError


class Progress(Protocol):
    """What the CLI's progress bar offers (tqdm fits); the default does nothing."""

    def reset(self, total: float | None = None) -> None: ...

    def update(self, n: float | None = 1) -> bool | None: ...


class _NoProgress:
    def reset(self, total: float | None = None) -> None:
        return None

    def update(self, n: float | None = 1) -> bool | None:
        return None


def describe_error(error: BaseException) -> str:
    """One line for the summary: the first leaf of a group, the type unless it is ours."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, LegacyError) or not str(error):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


@dataclass
class Tally:
    copied: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class MigrationReport:
    dry_run: bool = False
    sessions: Tally = field(default_factory=Tally)
    blobs: Tally = field(default_factory=Tally)
    users: Tally = field(default_factory=Tally)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped_keys: Counter[str] = field(default_factory=Counter)
    id_map: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, tally: Tally | None, item: str, error: BaseException) -> None:
        if tally is not None:
            tally.failed += 1
        self.failures.append(f"{item}: {describe_error(error)}")

    def summary(self, *, show_map: bool = True) -> list[str]:
        verb = "would be copied" if self.dry_run else "copied"
        lines = ["dry run: nothing was written"] if self.dry_run else []
        tallies = [("sessions", self.sessions), ("blobs", self.blobs)]
        if self.users.copied or self.users.skipped or self.users.failed:
            tallies.append(("people", self.users))
        for name, tally in tallies:
            lines.append(
                f"{name}: {tally.copied} {verb}, {tally.skipped} skipped (already there), "
                f"{tally.failed} failed"
            )
        renamed = sorted((old, new) for old, new in self.id_map.items() if old != new)
        if renamed and show_map:
            lines.append("legacy ids given new session ids:")
            lines += [f"  {old} -> {new}" for old, new in renamed]
        if self.dropped_keys:
            counts = ", ".join(f"{k} ×{n}" for k, n in sorted(self.dropped_keys.items()))
            lines.append(f"legacy profile keys not imported (unknown or invalid): {counts}")
        if self.notes:
            lines += ["notes:", *(f"  {note}" for note in sorted(self.notes))]
        if self.failures:
            lines += [f"failed ({len(self.failures)}):", *(f"  {f}" for f in sorted(self.failures))]
        return lines
