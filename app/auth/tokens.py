"""Bearer tokens: verified JWTs from one issuer (Firebase ID tokens or any OIDC issuer's).

Checked: the signature with the issuer's key named by `kid`, an asymmetric algorithm that
matches that key (RS256 for RSA, ES256 for P-256; `none`, HS* and a header `alg` that
disagrees with the key are refused — the algorithm is never taken from the token), `iss`,
`aud`, `exp`, `nbf`/`iat` (with LEEWAY seconds), and a non-empty `sub` of at most 128
characters. Verification uses PyJWT (with `cryptography`); nothing here is hand-made crypto.
"""

from __future__ import annotations

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
    def __init__(self, *, keys: JwksCache, issuer: str, audience: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience

    async def verify(self, token: str) -> Principal:
        """The token's person, or InvalidToken (KeysUnavailable when no key was ever
        fetched and the issuer is down)."""
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
