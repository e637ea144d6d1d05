"""Signed image URLs: valid for one path until they expire, for every worker with the key."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from app.auth.urls import UrlSigner

KEY = b"k" * 32
TTL = 600
PATH = "/api/sessions/3f2b9c1e0a7d4e5f8a6b2c1d0e9f7a6b/photos/partner"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def query(signer: UrlSigner, path: str = PATH) -> tuple[str, str]:
    """The (exp, sig) a signed URL carries, parsed back from its query string."""
    parsed = parse_qs(signer.sign(path), strict_parsing=True)
    assert set(parsed) == {"exp", "sig"}
    return parsed["exp"][0], parsed["sig"][0]


def test_a_signed_url_verifies_for_its_path_until_it_expires_and_not_after() -> None:
    clock = FakeClock()
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=clock)
    exp, sig = query(signer)
    assert int(exp) == int(clock.now) + TTL

    assert signer.valid(PATH, exp, sig)
    clock.now += TTL - 1
    assert signer.valid(PATH, exp, sig)
    clock.now = float(exp)  # the last second it is good for
    assert signer.valid(PATH, exp, sig)
    clock.now = float(exp) + 0.5
    assert not signer.valid(PATH, exp, sig)
    clock.now = float(exp) + 86_400
    assert not signer.valid(PATH, exp, sig)


def test_a_tampered_signature_is_refused() -> None:
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=FakeClock())
    exp, sig = query(signer)
    assert signer.valid(PATH, exp, sig)
    for i in (0, len(sig) // 2, len(sig) - 1):
        tampered = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
        assert not signer.valid(PATH, exp, tampered), i
    assert not signer.valid(PATH, exp, sig[:-1])
    assert not signer.valid(PATH, exp, sig + "A")
    assert not signer.valid(PATH, exp, sig + "=")


def test_a_tampered_expiry_is_refused() -> None:
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=FakeClock())
    exp, sig = query(signer)
    for later in (int(exp) + 1, int(exp) + 86_400, int(exp) * 10):
        assert not signer.valid(PATH, str(later), sig), later
    assert not signer.valid(PATH, str(int(exp) - 1), sig)


@pytest.mark.parametrize(
    "other",
    [
        "/api/sessions/00000000000000000000000000000000/photos/partner",  # another session
        "/api/sessions/3f2b9c1e0a7d4e5f8a6b2c1d0e9f7a6b/photos/child_1",  # another image
        "/api/sessions/3f2b9c1e0a7d4e5f8a6b2c1d0e9f7a6b/photos/partner/",
        "/api/sessions/3f2b9c1e0a7d4e5f8a6b2c1d0e9f7a6b/photos/Partner",
        "/api/sessions/3f2b9c1e0a7d4e5f8a6b2c1d0e9f7a6b/photos/partne",
        "",
    ],
    ids=["other-session", "other-image", "trailing-slash", "case", "prefix", "empty"],
)
def test_a_signature_for_one_path_is_refused_for_another(other: str) -> None:
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=FakeClock())
    exp, sig = query(signer)
    assert signer.valid(PATH, exp, sig)
    assert not signer.valid(other, exp, sig)


@pytest.mark.parametrize(
    "exp",
    [None, "", "abc", "-1", "1e12", "1800000600.0", " 1800000600", "0x6b49d418", "9" * 13],
    ids=repr,
)
def test_a_missing_or_non_numeric_expiry_is_refused(exp: str | None) -> None:
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=FakeClock())
    _, sig = query(signer)
    assert not signer.valid(PATH, exp, sig)


@pytest.mark.parametrize("exp", ["²", "①", "1800000600²", "⁹⁹⁹⁹⁹⁹⁹⁹⁹⁹"], ids=repr)
def test_an_expiry_of_unicode_digits_int_cannot_read_is_refused_not_raised(exp: str) -> None:
    """`str.isdigit()` is true for these, `int()` cannot parse them: a query string is
    attacker input, so this must be a refusal (a 403/404), never a ValueError (a 500)."""
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=FakeClock())
    _, sig = query(signer)
    assert exp.isdigit()
    assert signer.valid(PATH, exp, sig) is False


@pytest.mark.parametrize("sig", [None, ""], ids=repr)
def test_a_missing_signature_is_refused(sig: str | None) -> None:
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=FakeClock())
    exp, _ = query(signer)
    assert not signer.valid(PATH, exp, sig)


def test_a_key_shorter_than_32_bytes_is_refused_at_construction() -> None:
    for short in (b"", b"k", b"k" * 31):
        with pytest.raises(ValueError, match="32 bytes"):
            UrlSigner(key=short, ttl_seconds=TTL)
    UrlSigner(key=b"k" * 32, ttl_seconds=TTL)  # 32 is enough


def test_two_workers_with_the_same_key_accept_each_others_urls() -> None:
    clock = FakeClock()
    worker_a = UrlSigner(key=bytes(KEY), ttl_seconds=TTL, clock=clock)
    worker_b = UrlSigner(key=bytes(KEY), ttl_seconds=TTL, clock=clock)
    exp, sig = query(worker_a)
    assert worker_b.valid(PATH, exp, sig)
    exp, sig = query(worker_b, "/api/sessions/abc/photos/child_2")
    assert worker_a.valid("/api/sessions/abc/photos/child_2", exp, sig)


def test_a_worker_with_another_key_refuses_the_url() -> None:
    clock = FakeClock()
    signer = UrlSigner(key=KEY, ttl_seconds=TTL, clock=clock)
    stranger = UrlSigner(key=b"K" + KEY[1:], ttl_seconds=TTL, clock=clock)
    exp, sig = query(signer)
    assert signer.valid(PATH, exp, sig)
    assert not stranger.valid(PATH, exp, sig)
