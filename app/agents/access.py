"""Who may use a session. A session created by a signed-in person is theirs alone; a guest
session answers to whoever holds its id (a capability). Refusals look exactly like a
missing session, so an owned session's existence is never revealed."""

from __future__ import annotations

from dataclasses import dataclass

from app.repositories.base import SessionMeta, SessionNotFound


@dataclass(frozen=True)
class Caller:
    """The person asking, as the edge verified it: `owner_id` is the token's subject (None
    for a guest); `signed` means the request carries a valid signed URL for what it reads."""

    owner_id: str | None = None
    signed: bool = False

    def check(self, meta: SessionMeta) -> SessionMeta:
        if meta.owner_id is not None and not self.signed and meta.owner_id != self.owner_id:
            raise SessionNotFound(meta.session_id)
        return meta


GUEST = Caller()
