"""The issuer's signing keys (JWKS), fetched with the app's async HTTP client and cached.

- A fetch never blocks the event loop (httpx.AsyncClient; PyJWT's own JWKS client would
  fetch with blocking urllib on a cache miss, so it is not used).
- Cached per process for the `Cache-Control: max-age` the issuer sends, kept within
  [MIN_TTL, MAX_TTL] seconds. Past it, a known `kid` is still served while the set is
  refetched behind it (a key the issuer dropped verifies until that fetch lands).
- An unknown `kid` refetches at most once per REFETCH_INTERVAL seconds, so a flood of tokens
  with random `kid`s cannot hammer the issuer; concurrent misses share one fetch.
- While the issuer is unreachable the last good keys stay in use; only when no key was ever
  fetched does a lookup raise `KeysUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Final

import httpx
import jwt

log = logging.getLogger(__name__)

MIN_TTL: Final = 60.0
MAX_TTL: Final = 24 * 3600.0
DEFAULT_TTL: Final = 3600.0
REFETCH_INTERVAL: Final = 30.0
_MAX_AGE = re.compile(r"max-age=(\d+)")


class KeysUnavailable(Exception):
    """No signing key was ever fetched and the issuer cannot be reached now."""


class JwksCache:
    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._client = client
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = False
        self._expires = 0.0
        self._last_attempt = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0  # how many times the issuer was asked (observability, tests)

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, or None when the issuer does not (or no longer) has one."""
        now = self._clock()
        if self._fetched and kid in self._keys:
            if now >= self._expires:  # a known key: served while the set is refreshed
                self._refresh(now)
            return self._keys[kid]
        # Never fetched or an unknown kid: ask the issuer and wait for its answer. Lookups
        # during a fetch wait for it; the fetch is its own task, shielded, so a caller that
        # gives up (a client gone) never abandons it half done.
        self._refresh(now)
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        if not self._fetched:
            raise KeysUnavailable(self._url)
        return self._keys.get(kid)

    @property
    def refreshing(self) -> bool:
        """A fetch of the key set is under way (observability, tests)."""
        return self._inflight is not None

    def _refresh(self, now: float) -> None:
        """Start a fetch, but never more often than REFETCH_INTERVAL (a failed or useless
        fetch is not repeated per request)."""
        if self._inflight is None and now - self._last_attempt >= REFETCH_INTERVAL:
            self._last_attempt = now
            self._inflight = asyncio.ensure_future(self._fetch())

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            document = response.json()
            if not isinstance(document, dict):
                raise ValueError("a JWKS document is a JSON object")
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (httpx.HTTPError, ValueError, LookupError, TypeError, AttributeError,
                jwt.PyJWTError) as exc:  # fmt: skip
            # Keep the last good keys (if any); the next try waits REFETCH_INTERVAL.
            log.warning("could not fetch the issuer's keys: %s", type(exc).__name__)
            return
        finally:
            self._inflight = None
        self._keys = {k.key_id: k for k in keys if k.key_id}
        self._fetched = True
        self._expires = self._last_attempt + _ttl(response.headers.get("cache-control"))


def _ttl(cache_control: str | None) -> float:
    found = _MAX_AGE.search(cache_control or "")
    seconds = float(found.group(1)) if found else DEFAULT_TTL
    return min(MAX_TTL, max(MIN_TTL, seconds))
