"""Signed image URLs: `<img src>` sends no Authorization header, so the URL carries its proof.

The signature is an HMAC-SHA256, with URL_SIGNING_KEY, over the path and the expiry (a Unix
time); it is checked in constant time. Every worker with the same key accepts it. A URL for
one session or image is worthless for another (the path is signed), and useless after it
expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import urlencode


class UrlSigner:
    def __init__(
        self, *, key: bytes, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < 32:
            raise ValueError("URL signing key must be at least 32 bytes")
        self._key = key
        self._ttl = ttl_seconds
        self._clock = clock

    def _mac(self, path: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{expires}\n{path}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, path: str) -> str:
        """The query string (without '?') that proves access to `path` until it expires."""
        expires = int(self._clock()) + self._ttl
        return urlencode({"exp": expires, "sig": self._mac(path, expires)})

    def valid(self, path: str, expires: str | None, signature: str | None) -> bool:
        # ASCII digits only: int() refuses some characters isdigit() accepts (², ①).
        if not expires or not signature or len(expires) > 12:
            return False
        if not (expires.isascii() and expires.isdigit()):
            return False
        if int(expires) < self._clock():
            return False
        return hmac.compare_digest(self._mac(path, int(expires)), signature)
