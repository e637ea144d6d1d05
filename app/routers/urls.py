"""The URL of a session's image, as the API hands it out.

The version makes a regenerated image a new URL, so caches never show the old one. For a
signed-in caller (an owned session: `<img>` sends no bearer token) the URL also carries a
signature and an expiry (`app/auth/urls.py`); a guest's URL needs none (the session id is the
capability)."""

from __future__ import annotations

from urllib.parse import quote

from app.agents.access import Caller
from app.container import Auth


def photo_path(session_id: str, name: str) -> str:
    return f"/api/sessions/{session_id}/photos/{quote(name)}"


def image_url(auth: Auth, caller: Caller, session_id: str, name: str, version: str) -> str:
    path = photo_path(session_id, name)
    query = f"v={quote(version)}"
    if caller.owner_id is not None and auth.signer is not None:
        query += "&" + auth.signer.sign(path)
    return f"{path}?{query}"
