"""Bearer tokens: verified JWTs from one issuer (Firebase ID tokens or any OIDC issuer's).

Checked: the signature with the issuer's key named by `kid`, an asymmetric algorithm that
matches that key (RS256 for RSA, ES256 for P-256; `none`, HS* and a header `alg` that
disagrees with the key are refused — the algorithm is never taken from the token), `iss`,
`aud`, `exp`, `nbf`/`iat` (with LEEWAY seconds), and a non-empty `sub` of at most 128
characters. Verification uses PyJWT (with `cryptography`); nothing here is hand-made crypto.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import jwt

from app.auth.jwks import JwksCache

LEEWAY: Final = 60
MAX_SUBJECT: Final = 128
# The algorithm each key type may sign with; anything else is refused.
_ALGORITHM_OF_KEY: Final = {"RSA": "RS256", "EC": "ES256"}


class InvalidToken(Exception):
    """Malformed, badly signed, expired, for another audience or issuer: never a guest."""


class AuthRequired(Exception):
    """No bearer token where one is required (AUTH_MODE=required, or claiming a session)."""


@dataclass(frozen=True)
class Principal:
    """A verified person: the token's subject and the claims the API may show."""

    subject: str
    claims: dict[str, Any] = field(default_factory=dict)


class TokenVerifier:
    """Verifies tokens; remembers the last CACHE_SIZE verified ones (by their SHA-256) until
    they expire, so a client polling with one token pays for its signature once. Refusals are
    never remembered."""

    CACHE_SIZE: Final = 1024

    def __init__(
        self,
        *,
        keys: JwksCache,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._verified: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The token's person, or InvalidToken (KeysUnavailable when no key was ever
        fetched and the issuer is down)."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            expires, principal = cached
            if self._clock() < expires + LEEWAY:
                self._verified.move_to_end(digest)
                return principal
            del self._verified[digest]
        principal = await self._verify(token)
        self._verified[digest] = (float(principal.claims["exp"]), principal)
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token without a key id")
        key = await self._keys.key(kid)
        if key is None:
            raise InvalidToken("unknown key id")
        algorithm = _ALGORITHM_OF_KEY.get(key.key_type or "")
        if algorithm is None or header.get("alg") != algorithm:
            raise InvalidToken("algorithm does not match the key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT:
            raise InvalidToken("no usable subject")
        return Principal(subject, claims)
