"""Bearer tokens: what TokenVerifier accepts, and every kind of token it must refuse.

The keys come from a real JWKS endpoint on a loopback port (tests/support/jwks.py), fetched
by the app's JwksCache over HTTP; the refused tokens are minted with PyJWT, or by hand where
PyJWT would not make them (`alg: none`, HS256 keyed with the RSA public key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest

from app.auth.jwks import JwksCache
from app.auth.tokens import InvalidToken, Principal, TokenVerifier
from tests.support.jwks import (
    AUDIENCE,
    ISSUER,
    Issuer,
    JwksServer,
    SigningKey,
    jwks_server,
    new_key,
)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def server(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[JwksServer]:
    """One issuer for the module: these tests never change what it publishes."""
    with jwks_server(rsa_key, ec_key) as running:
        yield running


@pytest.fixture
async def verifier(server: JwksServer) -> AsyncIterator[TokenVerifier]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        keys = JwksCache(url=server.url, client=client)
        yield TokenVerifier(keys=keys, issuer=ISSUER, audience=AUDIENCE)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


async def refused(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


# ------------------------------------------------------------------ accepted
async def test_a_valid_rs256_token_names_its_subject_and_claims(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    principal = await verifier.verify(rsa.token("alice"))

    assert isinstance(principal, Principal)
    assert principal.subject == "alice"
    assert principal.claims["iss"] == ISSUER
    assert principal.claims["aud"] == AUDIENCE
    assert principal.claims["email"] == "alice@example.com"
    assert principal.claims["name"] == "テスト ユーザー"


async def test_a_valid_es256_token_names_its_subject_and_claims(
    verifier: TokenVerifier, ec: Issuer
) -> None:
    principal = await verifier.verify(ec.token("bob"))

    assert principal.subject == "bob"
    assert principal.claims["sub"] == "bob"
    assert principal.claims["email"] == "bob@example.com"


async def test_a_token_expired_30_seconds_ago_still_passes_within_the_leeway(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    now = int(time.time())
    principal = await verifier.verify(rsa.token("late", iat=now - 3600, exp=now - 30))
    assert principal.subject == "late"


async def test_a_token_not_valid_for_another_30_seconds_passes_within_the_leeway(
    verifier: TokenVerifier, ec: Issuer
) -> None:
    now = int(time.time())
    principal = await verifier.verify(ec.token("early", nbf=now + 30, iat=now + 30))
    assert principal.subject == "early"


async def test_a_subject_of_128_characters_passes(verifier: TokenVerifier, rsa: Issuer) -> None:
    subject = "s" * 128
    assert (await verifier.verify(rsa.token(subject))).subject == subject


async def test_an_audience_list_that_includes_ours_passes(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    principal = await verifier.verify(rsa.token("multi", aud=["someone-else", AUDIENCE]))
    assert principal.subject == "multi"


# ------------------------------------------------------------------ refused: claims
async def test_a_token_expired_beyond_the_leeway_is_refused(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    now = int(time.time())
    await refused(verifier, rsa.token(iat=now - 3600, exp=now - 120))


async def test_a_token_whose_nbf_is_beyond_the_leeway_is_refused(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    await refused(verifier, rsa.token(nbf=int(time.time()) + 120))


async def test_a_token_issued_in_the_future_beyond_the_leeway_is_refused(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    await refused(verifier, rsa.token(iat=int(time.time()) + 120))


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
async def test_a_token_missing_a_required_claim_is_refused(
    verifier: TokenVerifier, rsa: Issuer, claim: str
) -> None:
    token = rsa.token(**{claim: None})
    assert claim not in jwt.decode(token, options={"verify_signature": False})
    await refused(verifier, token)


async def test_a_token_for_another_audience_is_refused(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    await refused(verifier, rsa.token(aud="other"))


async def test_a_token_from_another_issuer_is_refused(verifier: TokenVerifier, ec: Issuer) -> None:
    await refused(verifier, ec.token(iss="other"))


@pytest.mark.parametrize(
    "subject",
    ["", "   ", "s" * 129, 12345],
    ids=["empty", "blank", "129-chars", "not-a-string"],
)
async def test_a_token_without_a_usable_subject_is_refused(
    verifier: TokenVerifier, rsa: Issuer, subject: Any
) -> None:
    await refused(verifier, rsa.token(subject))


# ------------------------------------------------------------------ refused: algorithms
async def test_an_unsigned_alg_none_token_naming_a_real_kid_is_refused(
    verifier: TokenVerifier, rsa: Issuer, rsa_key: SigningKey
) -> None:
    for alg in ("none", "None", "NONE"):
        token = (
            f"{segment({'alg': alg, 'kid': rsa_key.kid, 'typ': 'JWT'})}.{segment(rsa.claims())}."
        )
        await refused(verifier, token)


async def test_hs256_keyed_with_the_rsa_public_pem_is_refused(
    verifier: TokenVerifier, rsa: Issuer, rsa_key: SigningKey
) -> None:
    """The classic key confusion: the public key's PEM bytes used as an HMAC secret."""
    signing_input = f"{segment({'alg': 'HS256', 'kid': rsa_key.kid, 'typ': 'JWT'})}.{segment(rsa.claims('mallory'))}"
    mac = hmac.new(rsa_key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64url(mac)}"
    # The forgery is well made: it checks out against the PEM as an HMAC secret.
    header, payload, signature = forged.split(".")
    assert hmac.compare_digest(
        b64url(
            hmac.new(rsa_key.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        ),
        signature,
    )
    await refused(verifier, forged)


async def test_rs256_on_the_kid_of_an_ec_key_is_refused(
    verifier: TokenVerifier, ec: Issuer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    token = ec.token("mallory", key=rsa_key, headers={"kid": ec_key.kid})
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": ec_key.kid, "typ": "JWT"}
    await refused(verifier, token)


async def test_es256_on_the_kid_of_an_rsa_key_is_refused(
    verifier: TokenVerifier, rsa: Issuer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    token = rsa.token("mallory", key=ec_key, headers={"kid": rsa_key.kid})
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": rsa_key.kid, "typ": "JWT"}
    await refused(verifier, token)


@pytest.mark.parametrize("alg", ["RS512", "PS256", "RS384"])
async def test_another_rsa_algorithm_correctly_signed_by_the_published_key_is_refused(
    verifier: TokenVerifier, rsa: Issuer, rsa_key: SigningKey, alg: str
) -> None:
    """The algorithm is pinned to the key (RS256), never taken from the token."""
    token = jwt.encode(rsa.claims(), rsa_key.private, algorithm=alg, headers={"kid": rsa_key.kid})
    await refused(verifier, token)


# ------------------------------------------------------------------ refused: keys and shape
async def test_a_token_with_an_unknown_kid_is_refused(verifier: TokenVerifier, rsa: Issuer) -> None:
    await refused(verifier, rsa.token(headers={"kid": "nobody-published-this"}))


@pytest.mark.parametrize("kid", [None, "", 123, ["rsa-1"]], ids=repr)
async def test_a_token_without_a_usable_kid_is_refused(
    verifier: TokenVerifier, rsa: Issuer, rsa_key: SigningKey, kid: Any
) -> None:
    """Correctly signed by the published key: only the missing or unusable kid refuses it."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{segment(header)}.{segment(rsa.claims())}"
    rs256 = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    signature = rs256.sign(signing_input.encode(), rsa_key.private)
    # well signed: the published key, were it picked without a usable kid, would accept it
    assert rs256.verify(signing_input.encode(), rsa_key.private.public_key(), signature)
    token = f"{signing_input}.{b64url(signature)}"
    await refused(verifier, token)


@pytest.mark.parametrize("kind", ["RSA", "EC"])
async def test_a_token_signed_by_an_unpublished_key_under_a_published_kid_is_refused(
    verifier: TokenVerifier, rsa: Issuer, rsa_key: SigningKey, ec_key: SigningKey, kind: str
) -> None:
    published = rsa_key if kind == "RSA" else ec_key
    impostor = new_key(kind, kid=published.kid)
    await refused(verifier, rsa.token("mallory", key=impostor))


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b.c", "x" * 10_240, "...", "Bearer x.y.z", "eyJhbGciOiJSUzI1NiJ9.e30."],
    ids=["empty", "abc", "a.b.c", "10KB", "dots", "bearer-prefix", "no-kid-empty-sig"],
)
async def test_garbage_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    await refused(verifier, garbage)


async def test_a_tampered_payload_under_a_valid_signature_is_refused(
    verifier: TokenVerifier, rsa: Issuer
) -> None:
    header, _, signature = rsa.token("alice").split(".")
    await refused(verifier, f"{header}.{segment(rsa.claims('admin'))}.{signature}")
