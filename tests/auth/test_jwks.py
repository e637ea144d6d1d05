"""The issuer's keys: fetched over real HTTP, cached for a bounded max-age, refetched for an
unknown kid at most once per REFETCH_INTERVAL, kept while the issuer is down.

Cache time runs on a fake clock handed to JwksCache; tokens' own exp/iat use real time (they
are valid for an hour, which no test here waits for).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.auth.jwks import (
    REFETCH_INTERVAL,
    JwksCache,
    KeysUnavailable,
)
from app.auth.tokens import InvalidToken, TokenVerifier
from tests.support.jwks import (
    AUDIENCE,
    ISSUER,
    Issuer,
    JwksServer,
    SigningKey,
    jwks_server,
    new_key,
)
from tests.support.polling import eventually
from tests.support.services import free_port

MAX_AGE = 3600.0  # what the test issuer sends by default (Cache-Control: max-age=3600)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def running_server(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[JwksServer]:
    with jwks_server(rsa_key, ec_key) as running:
        yield running


@pytest.fixture
def server(running_server: JwksServer, rsa_key: SigningKey, ec_key: SigningKey) -> JwksServer:
    """The module's issuer, back to its defaults for each test."""
    running_server.keys = [rsa_key, ec_key]
    running_server.fail = False
    running_server.answering.set()
    running_server.cache_control = f"public, max-age={MAX_AGE:.0f}"
    running_server.__dict__.pop("document", None)  # a test may serve another document
    running_server.requests = 0
    return running_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


@pytest.fixture
def cache(server: JwksServer, client: httpx.AsyncClient, clock: FakeClock) -> JwksCache:
    return JwksCache(url=server.url, client=client, clock=clock)


@pytest.fixture
def verifier(cache: JwksCache) -> TokenVerifier:
    return TokenVerifier(keys=cache, issuer=ISSUER, audience=AUDIENCE)


def fresh(issuer: Issuer, **headers: Any) -> str:
    """A token never seen before (TokenVerifier remembers verified ones by their bytes)."""
    return issuer.token(f"user-{uuid.uuid4().hex}", headers=headers or None)


async def verifies(verifier: TokenVerifier, issuer: Issuer) -> None:
    subject = f"user-{uuid.uuid4().hex}"
    assert (await verifier.verify(issuer.token(subject))).subject == subject


async def unknown_kid_refused(verifier: TokenVerifier, issuer: Issuer) -> None:
    with pytest.raises(InvalidToken):
        await verifier.verify(fresh(issuer, kid=f"random-{uuid.uuid4().hex}"))


async def counts(cache: JwksCache, server: JwksServer) -> tuple[int, int]:
    """Fetches asked for and served, once no fetch is under way (a known key is served
    while its expired set is refreshed in the background)."""

    async def settled() -> bool:
        return not cache.refreshing

    await eventually(settled, within=5.0, what="the key set's refresh to end")
    return cache.fetches, server.requests


# ------------------------------------------------------------------ caching and max-age
async def test_many_verifications_with_known_keys_fetch_the_keys_once(
    server: JwksServer,
    cache: JwksCache,
    verifier: TokenVerifier,
    rsa: Issuer,
    ec: Issuer,
    clock: FakeClock,
) -> None:
    for i in range(60):
        clock.now = i * 10.0  # ten minutes of traffic, within the hour's max-age
        await verifies(verifier, rsa if i % 2 else ec)
    assert await counts(cache, server) == (1, 1)


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        ("public, max-age=300, must-revalidate, no-transform", 300.0),
        ("max-age=1", 60.0),
        (f"public, max-age={10**9}", 24 * 3600.0),
        (None, 3600.0),  # no Cache-Control header at all
        ("public, no-transform", 3600.0),  # a header without max-age
    ],
    ids=[
        "max-age-300",
        "max-age-1-clamped-to-60s",
        "max-age-1e9-clamped-to-24h",
        "absent",
        "no-max-age",
    ],
)
async def test_the_keys_are_refetched_exactly_when_their_bounded_max_age_ends(
    server: JwksServer, clock: FakeClock, rsa: Issuer, cache_control: str | None, ttl: float
) -> None:
    async def strip_cache_control(response: httpx.Response) -> None:
        if cache_control is None:
            del response.headers["cache-control"]
        assert ("cache-control" in response.headers) == (cache_control is not None)

    server.cache_control = cache_control or "public, max-age=5"  # stripped when None
    async with httpx.AsyncClient(
        timeout=5.0, event_hooks={"response": [strip_cache_control]}
    ) as http:
        cache = JwksCache(url=server.url, client=http, clock=clock)
        verifier = TokenVerifier(keys=cache, issuer=ISSUER, audience=AUDIENCE)

        await verifies(verifier, rsa)
        assert await counts(cache, server) == (1, 1)

        clock.now = ttl - 0.5  # still fresh
        await verifies(verifier, rsa)
        assert await counts(cache, server) == (1, 1)

        clock.now = ttl  # expired: one refetch
        await verifies(verifier, rsa)
        assert await counts(cache, server) == (2, 2)

        clock.now = ttl + ttl - 0.5  # the refetched keys are fresh for another ttl
        await verifies(verifier, rsa)
        assert await counts(cache, server) == (2, 2)


# ------------------------------------------------------------------ rotation
async def test_a_newly_published_key_verifies_after_one_refetch_and_a_removed_one_stops(
    server: JwksServer,
    cache: JwksCache,
    verifier: TokenVerifier,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    old = Issuer(rsa_key)
    await verifies(verifier, old)
    assert await counts(cache, server) == (1, 1)

    rotated = new_key("RSA", kid="rsa-2")
    server.keys = [rotated]  # the issuer rotates: rsa-1 is gone, rsa-2 is new
    clock.now = REFETCH_INTERVAL + 70.0  # later, well within the cached hour

    await verifies(verifier, Issuer(rotated))
    assert await counts(cache, server) == (2, 2)
    await verifies(verifier, Issuer(rotated))  # and it stays known
    with pytest.raises(InvalidToken):  # the old kid is no longer published
        await verifier.verify(fresh(old))
    assert await counts(cache, server) == (2, 2)  # (the refused kid is within the refetch interval)


# ------------------------------------------------------------------ refetch rate limit
async def test_a_flood_of_random_kids_fetches_at_most_once_per_refetch_interval(
    server: JwksServer,
    cache: JwksCache,
    verifier: TokenVerifier,
    ec: Issuer,
    rsa: Issuer,
    clock: FakeClock,
) -> None:
    assert REFETCH_INTERVAL == 30.0
    for i in range(1000):  # t = 0 .. 29.97
        clock.now = i * 0.03
        await unknown_kid_refused(verifier, ec)
    assert await counts(cache, server) == (1, 1)

    for i in range(1000):  # t = 30 .. 59.97
        clock.now = 30.0 + i * 0.03
        await unknown_kid_refused(verifier, ec)
    assert await counts(cache, server) == (2, 2)

    clock.now = 60.0
    await unknown_kid_refused(verifier, ec)
    assert await counts(cache, server) == (3, 3)
    await verifies(verifier, rsa)  # the flood did not cost the known keys
    assert await counts(cache, server) == (3, 3)


async def test_concurrent_unknown_kids_share_one_fetch(
    server: JwksServer, cache: JwksCache, verifier: TokenVerifier, ec: Issuer, clock: FakeClock
) -> None:
    await verifies(verifier, ec)
    clock.now = REFETCH_INTERVAL + 1.0

    results = await asyncio.gather(
        *(verifier.verify(fresh(ec, kid=f"random-{i}")) for i in range(50)), return_exceptions=True
    )

    assert all(isinstance(r, InvalidToken) for r in results), results
    assert await counts(cache, server) == (2, 2)


async def test_concurrent_first_verifications_share_one_fetch_and_all_succeed(
    server: JwksServer, cache: JwksCache, verifier: TokenVerifier, rsa: Issuer, ec: Issuer
) -> None:
    """A cold process receiving 50 requests at once: one fetch, and every caller waits for it
    (none is told the keys are unavailable while the fetch is on its way)."""
    tokens = [fresh(rsa if i % 2 else ec) for i in range(50)]

    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)

    failures = [type(r).__name__ for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} of 50 failed: {sorted(set(failures))}"
    assert await counts(cache, server) == (1, 1)


async def test_concurrent_tokens_with_a_just_rotated_kid_share_one_fetch_and_all_succeed(
    server: JwksServer,
    cache: JwksCache,
    verifier: TokenVerifier,
    rsa: Issuer,
    ec_key: SigningKey,
    clock: FakeClock,
) -> None:
    await verifies(verifier, rsa)
    rotated = new_key("EC", kid="ec-2")
    server.keys = [*server.keys, rotated]
    clock.now = REFETCH_INTERVAL + 1.0
    new = Issuer(rotated)

    results = await asyncio.gather(
        *(verifier.verify(fresh(new)) for _ in range(50)), return_exceptions=True
    )

    failures = [type(r).__name__ for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} of 50 failed: {sorted(set(failures))}"
    assert await counts(cache, server) == (2, 2)


# ------------------------------------------------------------------ the issuer down
async def test_known_keys_keep_verifying_while_the_issuer_is_down_and_retries_stay_rate_limited(
    server: JwksServer,
    cache: JwksCache,
    verifier: TokenVerifier,
    rsa: Issuer,
    ec: Issuer,
    clock: FakeClock,
) -> None:
    await verifies(verifier, rsa)
    server.fail = True

    clock.now = MAX_AGE + 1.0  # the cached keys have expired: a refetch is tried, and fails
    await verifies(verifier, rsa)
    assert await counts(cache, server) == (2, 2)

    for i in range(100):  # the next 29.7 s: no new attempt, known keys still verify
        clock.now = MAX_AGE + 1.0 + i * 0.297
        await verifies(verifier, ec if i % 2 else rsa)
        await unknown_kid_refused(verifier, ec)
    assert await counts(cache, server) == (2, 2)

    clock.now = MAX_AGE + 1.0 + REFETCH_INTERVAL  # one more attempt per interval
    await verifies(verifier, ec)
    assert await counts(cache, server) == (3, 3)

    server.fail = False  # the issuer is back: the next attempt refreshes for a full max-age
    clock.now = MAX_AGE + 1.0 + 2 * REFETCH_INTERVAL
    await verifies(verifier, rsa)
    assert await counts(cache, server) == (4, 4)
    clock.now += MAX_AGE - 1.0
    await verifies(verifier, rsa)
    assert await counts(cache, server) == (4, 4)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"[]", id="json-list"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"keys": []}', id="no-keys"),
        pytest.param(b'{"keys": "x"}', id="keys-not-a-list"),
        pytest.param(b'{"keys": [{"kty": "RSA", "kid": "rsa-1"}]}', id="rsa-key-without-n-e"),
        pytest.param(b'{"keys": [{"kty": "oct"}]}', id="oct-key-without-k"),
    ],
)
async def test_a_broken_key_document_keeps_the_last_good_keys(
    server: JwksServer,
    cache: JwksCache,
    verifier: TokenVerifier,
    rsa: Issuer,
    clock: FakeClock,
    document: bytes,
) -> None:
    await verifies(verifier, rsa)
    server.document = lambda: document  # type: ignore[method-assign]

    clock.now = MAX_AGE + 1.0
    await verifies(verifier, rsa)  # the answer was useless: the last good keys stay
    assert await counts(cache, server) == (2, 2)


@pytest.mark.parametrize("how", ["closed-port", "http-500"])
async def test_with_no_key_ever_fetched_an_unreachable_issuer_means_keys_unavailable(
    server: JwksServer, client: httpx.AsyncClient, clock: FakeClock, rsa: Issuer, how: str
) -> None:
    if how == "closed-port":
        url = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    else:
        url, server.fail = server.url, True
    cache = JwksCache(url=url, client=client, clock=clock)
    verifier = TokenVerifier(keys=cache, issuer=ISSUER, audience=AUDIENCE)

    with pytest.raises(KeysUnavailable):
        await verifier.verify(fresh(rsa))
    with pytest.raises(KeysUnavailable):  # within the interval: no new attempt, same answer
        await cache.key("rsa-1")
    assert cache.fetches == 1
    assert server.requests == (1 if how == "http-500" else 0)


async def test_keys_become_available_once_the_issuer_answers_after_the_refetch_interval(
    server: JwksServer, cache: JwksCache, verifier: TokenVerifier, rsa: Issuer, clock: FakeClock
) -> None:
    server.fail = True
    with pytest.raises(KeysUnavailable):
        await verifier.verify(fresh(rsa))
    server.fail = False
    clock.now = REFETCH_INTERVAL
    await verifies(verifier, rsa)
    assert await counts(cache, server) == (2, 2)


# ------------------------------------------------------------------ never blocking the loop
async def test_a_slow_issuer_does_not_block_the_event_loop(
    server: JwksServer, cache: JwksCache, verifier: TokenVerifier, rsa: Issuer
) -> None:
    server.answering.clear()  # the issuer answers only when the test says so
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    verification = asyncio.create_task(verifier.verify(fresh(rsa)))
    ticking = asyncio.create_task(ticker())
    try:

        async def ticked_while_the_fetch_waits() -> bool:
            return server.requests == 1 and ticks >= 10

        await eventually(ticked_while_the_fetch_waits, within=5.0, what="ticks during the fetch")
        assert not verification.done()  # still waiting on the issuer, and the loop ran
        server.answering.set()
        principal = await verification
        assert principal.subject.startswith("user-")
        assert await counts(cache, server) == (1, 1)
    finally:
        server.answering.set()
        ticking.cancel()
        verification.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking


async def test_a_known_key_is_served_while_its_expired_set_is_refreshed(
    server: JwksServer, cache: JwksCache, verifier: TokenVerifier, rsa: Issuer, clock: FakeClock
) -> None:
    """Past the set's max-age a token with a known kid verifies at once; the refetch goes on
    behind it (a slow or unreachable issuer never stalls the requests of signed-in people)."""
    await verifies(verifier, rsa)
    server.answering.clear()  # the issuer holds its answer
    clock.now = MAX_AGE + 1.0
    try:
        await asyncio.wait_for(verifies(verifier, rsa), timeout=2.0)
        assert cache.refreshing and server.requests in (1, 2)  # the refetch is under way
    finally:
        server.answering.set()
    assert await counts(cache, server) == (2, 2)


async def test_a_caller_giving_up_mid_fetch_does_not_leave_the_keys_unavailable(
    server: JwksServer, cache: JwksCache, verifier: TokenVerifier, rsa: Issuer
) -> None:
    """A request cancelled (client gone, deadline) while it fetches the keys: the next caller
    still gets them (the fetch goes on for it, or is tried again), not 30 s of 503s."""
    server.answering.clear()
    first = asyncio.create_task(verifier.verify(fresh(rsa)))

    async def fetch_under_way() -> bool:
        return server.requests == 1

    await eventually(fetch_under_way, within=5.0, what="the first fetch to reach the issuer")
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    server.answering.set()

    await verifies(verifier, rsa)
    assert server.requests <= 2
