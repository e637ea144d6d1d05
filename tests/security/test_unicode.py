"""Emoji (ZWJ sequences, flags, skin tones), RTL text, 4-byte UTF-8 and Japanese round-trip
byte-exact: through the interview and the family history, over HTTP and in the store's own
bytes, on file sessions and on Redis sessions. No normalisation (NFC/NFKC), no escaping, no
replacement characters."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ApiClient
from tests.api.scripted_user import SCRIPT
from tests.security.support import hostile_client

TEXTS: tuple[str, ...] = (
    "家族みんなで旅行に行きたいです😀",
    "👨‍👩‍👧‍👦と👩🏽‍💻と🏳️‍🌈と🧑🏿‍🤝‍🧑🏻の写真",  # ZWJ sequences, skin tones, flag + VS16
    "🇯🇵から🇫🇷へ1️⃣回だけ",  # regional-indicator flags, keycap
    "مرحبا بكم في عائلتي",  # Arabic (RTL)
    "שלום עולם, \u200fזה מבחן\u200e ok",  # Hebrew with RLM/LRM marks
    "私は\u202bعربي\u202cを話します",  # RTL embedding inside Japanese
    "𠮷野家で𩸽を食べた🀄",  # CJK extension B (4-byte UTF-8)
    "𝒽ℯ𝓇𝒶と𝕱𝖆𝖒𝖎𝖑𝖞",  # mathematical alphanumerics (4-byte)
    "ひらがな・カタカナ・漢字・ｶﾀｶﾅ・㍿・〜・〒",  # half-width kana, compatibility characters
    "か\u3099とe\u0301は分解されたまま",  # decomposed: NFC would change the bytes
    "葛\U000e0100城と辻\U000e0101",  # ideographic variation selectors (4-byte)
)


def _not_normalised(text: str) -> bool:
    return any(unicodedata.normalize(form, text) != text for form in ("NFC", "NFKC"))


def test_the_texts_would_expose_normalisation() -> None:
    assert any(_not_normalised(t) for t in TEXTS)
    assert any(len(ch.encode()) == 4 for t in TEXTS for ch in t)


async def _store_bytes(api: ApiClient, sid: str) -> bytes:
    """Everything the session store holds for one session, as raw bytes."""
    settings = api.settings
    if settings.resolved_session_type == "file":
        folder = settings.resolved_sessions_dir / sid
        return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())
    import redis.asyncio

    assert settings.redis_url is not None
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        data: list[Any] = []  # bytes: the client does not decode responses
        async for key in client.scan_iter(match=f"{settings.redis_namespace}:{{{sid}}}:*"):
            kind = await client.type(key)
            if kind == b"list":
                data += await client.lrange(key, 0, -1)
            elif kind == b"hash":
                for field, value in (await client.hgetall(key)).items():
                    data += [field, value]
            elif kind == b"string":
                data.append(await client.get(key) or b"")
        return b"".join(data)
    finally:
        await client.aclose()


@pytest.mark.parametrize("stack", ["file-disk", "redis-disk"])
async def test_unicode_round_trips_byte_exact_through_both_histories(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with hostile_client(stack, tmp_path, request) as api:
        sid = (await api.post("/api/sessions")).json()["session_id"]
        # The interview.
        for text in TEXTS:
            response = await api.post(f"/api/sessions/{sid}/messages", json={"message": text})
            assert response.status_code == 200, response.text
            assert text.encode() in response.content  # raw UTF-8 in the response, unescaped
        history = (await api.get(f"/api/sessions/{sid}/status")).json()["conversation_history"]
        sent = [e["message"] for e in history if e["speaker"] == "user"]
        assert [m.encode() for m in sent] == [t.encode() for t in TEXTS]
        stored = await _store_bytes(api, sid)
        for text in TEXTS:
            assert text.encode() in stored, text

        # The family conversation (after the scripted user completes the interview).
        for line in SCRIPT:
            body = (await api.post(f"/api/sessions/{sid}/messages", json={"message": line})).json()
            if body["profile_complete"]:
                break
        assert (await api.post(f"/api/sessions/{sid}/complete")).status_code == 200
        for text in TEXTS[:4]:
            response = await api.post(
                f"/api/sessions/{sid}/family/messages", json={"message": text}
            )
            assert response.status_code == 200, response.text
        family = (await api.get(f"/api/sessions/{sid}/family/status")).json()
        said = [e["message"] for e in family["conversation_history"] if e["speaker"] == "user"]
        assert [m.encode() for m in said] == [t.encode() for t in TEXTS[:4]]
        stored = await _store_bytes(api, sid)
        for text in TEXTS[:4]:
            assert stored.count(text.encode()) >= 2, text  # interview + family history
        assert "\ufffd".encode() not in stored
