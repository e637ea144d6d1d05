"""The signing keys of a test issuer and issuers of tokens with them, shared by the token
and JWKS tests (each module runs its own JWKS server over them)."""

from __future__ import annotations

import pytest

from tests.support.jwks import Issuer, SigningKey, new_key


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return new_key("RSA", kid="rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return new_key("EC", kid="ec-1")


@pytest.fixture
def rsa(rsa_key: SigningKey) -> Issuer:
    return Issuer(rsa_key)


@pytest.fixture
def ec(ec_key: SigningKey) -> Issuer:
    return Issuer(ec_key)
