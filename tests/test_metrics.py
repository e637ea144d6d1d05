"""Prometheus metrics (`METRICS_ENABLED=true`, `GET /metrics`), scraped and parsed as a
Prometheus server would (prometheus-client's own parser), with exact sample values.

In-process apps over file + disk (the series do not depend on the stores), the Gemini brain
through the real SDK against the fake Gemini, and one real `uvicorn --workers 2` in
prometheus-client's multiprocess mode: every scrape, whichever worker answers it, reports the
requests of both workers as one set.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, mmap_dict
from prometheus_client.parser import text_string_to_metric_families

from app.container import build_session_repository
from app.metrics import Metrics, empty_multiprocess_dir
from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import FAMILY_AGREEING, SCRIPT
from tests.reliability._servers import hera_servers, server_env
from tests.support.api import assert_json_error, new_session
from tests.support.fake_gemini import FakeGemini, error_body

OpenApi = Callable[..., Awaitable[ApiClient]]
Labels = tuple[str, ...]

SESSION = "/api/sessions/{session_id}"
FAMILIES = {
    "hera_http_requests",
    "hera_http_request_duration_seconds",
    "hera_model_calls",
    "hera_model_call_duration_seconds",
    "hera_model_retries",
    "hera_store_operations",
    "hera_store_operation_duration_seconds",
    "hera_lock_wait_seconds",
    "hera_session_busy",
    "hera_turns_in_flight",
    "hera_refusals",
}


# ------------------------------------------------------------------------------ scraping
class Scrape:
    """One parsed exposition: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, list[Any]] = {}
        for family in text_string_to_metric_families(text):
            assert family.name not in self.families, f"family {family.name} twice"
            self.families[family.name] = list(family.samples)

    def series(self, name: str, *label_names: str) -> dict[Labels, float]:
        """The samples called `name` (e.g. `hera_http_requests_total`), keyed by the values
        of `label_names` in that order; each sample must have exactly those labels."""
        found: dict[Labels, float] = {}
        for samples in self.families.values():
            for sample in samples:
                if sample.name != name:
                    continue
                assert set(sample.labels) == set(label_names), (name, sample.labels)
                key = tuple(sample.labels[label] for label in label_names)
                assert key not in found, f"{name}{sample.labels} twice"
                found[key] = sample.value
        return found

    def value(self, name: str) -> float:
        """The one sample of an unlabelled series."""
        series = self.series(name)
        assert list(series) == [()], f"{name}: {series}"
        return series[()]

    def sample_count(self) -> dict[str, int]:
        return {name: len(samples) for name, samples in self.families.items()}

    def label_values(self) -> set[str]:
        return {v for samples in self.families.values() for s in samples for v in s.labels.values()}


async def scrape(api: httpx.AsyncClient) -> Scrape:
    response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def histogram_counts(page: Scrape, family: str, *label_names: str) -> dict[Labels, float]:
    """`<family>_count` by labels, checked against the +Inf bucket of the same series."""
    counts = page.series(f"{family}_count", *label_names)
    infinite = {
        key[:-1]: value
        for key, value in page.series(f"{family}_bucket", *label_names, "le").items()
        if key[-1] == "+Inf"
    }
    assert infinite == counts, family
    return counts


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
async def open_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[OpenApi]:
    """Opens apps over file + disk with metrics on (limits off unless given); each one is
    shut down afterwards."""
    async with AsyncExitStack() as stack:
        opened = 0

        async def open_one(**overrides: Any) -> ApiClient:
            nonlocal opened
            opened += 1
            settings = stack_settings(
                "file-disk",
                tmp_path / f"app{opened}",
                request,
                **{"metrics_enabled": True, "rate_limits": "off", **overrides},
            )
            clients = open_client(settings)
            client = await anext(clients)
            stack.push_async_callback(_finish, clients)
            return client

        yield open_one


async def _finish(clients: AsyncIterator[ApiClient]) -> None:
    with suppress(StopAsyncIteration):
        await anext(clients)  # the rest of open_client: the lifespan ends


async def turn(api: httpx.AsyncClient, sid: str, message: str = "こんにちは") -> httpx.Response:
    return await api.post(f"/api/sessions/{sid}/messages", json={"message": message})


# ------------------------------------------------------------------------------ /metrics
async def test_metrics_are_off_by_default_and_404_json(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = stack_settings("file-disk", tmp_path, request)
    assert settings.metrics_enabled is False
    async for api in open_client(settings):
        assert api.app.state.services.observer.metrics is None
        sid = await new_session(api)
        for path in ("/metrics", "/api/metrics", f"/api/sessions/{sid}/metrics"):
            response = await api.get(path)
            assert_json_error(response, 404)
            assert "hera_" not in response.text


async def test_metrics_on_answer_the_text_format_only_at_metrics(open_api: OpenApi) -> None:
    api = await open_api()
    sid = await new_session(api)
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert re.match(r"^text/plain; version=\d+\.\d+\.\d+; charset=utf-8$", CONTENT_TYPE_LATEST)
    page = Scrape(response.text)
    assert set(page.families) >= FAMILIES, sorted(FAMILIES - set(page.families))
    assert page.value("hera_turns_in_flight") == 0
    assert page.value("hera_session_busy_total") == 0
    # Never under a session's path (nor anywhere else under /api): those stay JSON 404s.
    for path in (f"/api/sessions/{sid}/metrics", "/api/metrics", f"/api/sessions/{sid}/metrics/"):
        other = await api.get(path)
        assert_json_error(other, 404)
        assert "hera_" not in other.text
    assert_json_error(await api.post("/metrics"), 405)


async def test_the_exposition_is_read_off_the_event_loop(
    open_api: OpenApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In multiprocess mode it reads every worker's files: a worker thread does that.
    api = await open_api()
    observed = api.app.state.services.observer.metrics
    exposition, threads = observed.exposition, []

    def recorded() -> bytes:
        threads.append(threading.get_ident())
        return exposition()

    monkeypatch.setattr(observed, "exposition", recorded)
    response = await api.get("/metrics")
    assert response.status_code == 200 and "hera_http_requests_total" in response.text
    assert len(threads) == 1 and threads[0] != threading.get_ident()


# ------------------------------------------------------------------------------ a journey
async def test_a_journey_is_counted_exactly(open_api: OpenApi) -> None:
    api = await open_api()
    sid = await new_session(api)
    turns = 0
    for message in SCRIPT:
        response = await turn(api, sid, message)
        assert response.status_code == 200, response.text
        turns += 1
        if response.json()["profile_complete"]:
            break
    assert (await api.post(f"/api/sessions/{sid}/complete")).status_code == 200
    for message in FAMILY_AGREEING:
        family = await api.post(f"/api/sessions/{sid}/family/messages", json={"message": message})
        assert family.status_code == 200, family.text
    assert family.json()["conversation_complete"] is True
    partner = await api.post(f"/api/sessions/{sid}/generate-image", json={"target": "partner"})
    assert partner.status_code == 200, partner.text
    photo = await api.post(
        f"/api/sessions/{sid}/photos/user", files={"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
    )
    assert photo.status_code == 200, photo.text
    # Locked operations: the interview turns, complete, family turns, the image, the upload.
    locked = turns + 1 + len(FAMILY_AGREEING) + 1 + 1

    page = await scrape(api)
    requests = {
        ("POST", "/api/sessions", "201"): 1.0,
        ("POST", f"{SESSION}/messages", "200"): float(turns),
        ("POST", f"{SESSION}/complete", "200"): 1.0,
        ("POST", f"{SESSION}/family/messages", "200"): float(len(FAMILY_AGREEING)),
        ("POST", f"{SESSION}/generate-image", "200"): 1.0,
        ("POST", f"{SESSION}/photos/user", "200"): 1.0,
    }
    assert page.series("hera_http_requests_total", "method", "route", "status") == requests
    latency = histogram_counts(page, "hera_http_request_duration_seconds", "method", "route")
    assert latency == {key[:2]: count for key, count in requests.items()}

    calls = page.series("hera_model_calls_total", "provider", "model", "kind", "outcome")
    assert calls == {
        ("offline", "offline", "interview", "ok"): float(turns),
        ("offline", "offline", "family", "ok"): float(len(FAMILY_AGREEING)),
        ("offline", "offline", "story", "ok"): 1.0,
        ("offline", "offline", "letter", "ok"): 1.0,
        ("offline", "offline", "image", "ok"): 1.0,
    }
    assert histogram_counts(page, "hera_model_call_duration_seconds", "provider", "kind") == {
        ("offline", kind): value for (_, _, kind, _), value in calls.items()
    }
    assert page.series("hera_model_retries_total", "provider", "kind") == {}

    stores = page.series("hera_store_operations_total", "store", "operation", "outcome")
    assert stores[("sessions", "create", "ok")] == 1
    assert stores[("sessions", "load", "ok")] == locked
    assert stores[("sessions", "commit", "ok")] == locked
    assert stores[("blobs", "put", "ok")] == 2  # the partner image and the photo
    assert {outcome for (_, _, outcome) in stores} == {"ok"}
    store_latency = histogram_counts(
        page, "hera_store_operation_duration_seconds", "store", "operation"
    )
    assert store_latency == {key[:2]: count for key, count in stores.items()}

    assert histogram_counts(page, "hera_lock_wait_seconds") == {(): float(locked)}
    assert page.value("hera_session_busy_total") == 0
    assert page.value("hera_turns_in_flight") == 0
    assert page.series("hera_refusals_total", "reason", "kind") == {}

    # The scrape itself is counted once it is answered (and only then).
    again = await scrape(api)
    requests[("GET", "/metrics", "200")] = 1.0
    assert again.series("hera_http_requests_total", "method", "route", "status") == requests


# ------------------------------------------------------------------------------ Gemini
@pytest.fixture
def open_gemini(open_api: OpenApi, fake_gemini: FakeGemini) -> OpenApi:
    async def open_one(**overrides: Any) -> ApiClient:
        return await open_api(
            llm_provider="gemini",
            gemini_api_key="test-key",
            gemini_base_url=fake_gemini.base_url,
            gemini_model="gemini-test-flash",
            **overrides,
        )

    return open_one


def gemini_calls(page: Scrape) -> dict[Labels, float]:
    return page.series("hera_model_calls_total", "provider", "model", "kind", "outcome")


async def test_a_gemini_503_is_one_retry_and_one_ok_call(
    open_gemini: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await open_gemini(llm_max_retries=1, llm_timeout_seconds=5.0)
    sid = await new_session(api)
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE"))
    assert (await turn(api, sid)).status_code == 200
    assert len(fake_gemini.requests) == 2
    page = await scrape(api)
    assert page.series("hera_model_retries_total", "provider", "kind") == {
        ("gemini", "interview"): 1.0
    }
    assert gemini_calls(page) == {("gemini", "gemini-test-flash", "interview", "ok"): 1.0}


async def test_a_failed_gemini_call_is_outcome_error(
    open_gemini: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await open_gemini(llm_max_retries=1, llm_timeout_seconds=5.0)
    sid = await new_session(api)
    for _ in range(2):  # the attempt and its one retry
        fake_gemini.enqueue(500, error_body(500, "INTERNAL"))
    assert_json_error(await turn(api, sid), 502, "llm_error")
    page = await scrape(api)
    assert gemini_calls(page) == {("gemini", "gemini-test-flash", "interview", "error"): 1.0}
    assert page.series("hera_model_retries_total", "provider", "kind") == {
        ("gemini", "interview"): 1.0
    }
    assert page.value("hera_turns_in_flight") == 0


async def test_a_gemini_timeout_is_outcome_timeout(
    open_gemini: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await open_gemini(llm_max_retries=0, llm_timeout_seconds=0.5)
    sid = await new_session(api)
    fake_gemini.hang = True
    assert_json_error(await turn(api, sid), 504, "llm_timeout")
    page = await scrape(api)
    assert gemini_calls(page) == {("gemini", "gemini-test-flash", "interview", "timeout"): 1.0}
    assert page.series("hera_model_retries_total", "provider", "kind") == {}
    durations = page.series("hera_model_call_duration_seconds_sum", "provider", "kind")
    assert durations[("gemini", "interview")] >= 0.5


# ------------------------------------------------------------------------------ busy, refusals
async def test_a_busy_session_is_counted_with_its_lock_wait(open_api: OpenApi) -> None:
    api = await open_api(lock_wait_seconds=0.2)
    sid = await new_session(api)
    # Another holder of the session's lock (flock: excludes this process's own repository).
    holder = await build_session_repository(api.settings)
    try:
        async with holder.lock(session_id=sid):
            assert_json_error(await turn(api, sid), 409, "session_busy")
            page = await scrape(api)
    finally:
        await holder.aclose()
    assert page.value("hera_session_busy_total") == 1
    lock_waits = page.series("hera_lock_wait_seconds_count")
    assert lock_waits == {(): 1.0}  # the wait that ran out is a wait too
    assert page.series("hera_lock_wait_seconds_sum")[()] >= 0.2
    assert page.value("hera_turns_in_flight") == 0
    assert page.series("hera_model_calls_total", "provider", "model", "kind", "outcome") == {}
    assert (
        page.series("hera_http_requests_total", "method", "route", "status")[
            ("POST", f"{SESSION}/messages", "409")
        ]
        == 1
    )

    assert (await turn(api, sid)).status_code == 200
    after = await scrape(api)
    assert after.value("hera_session_busy_total") == 1
    assert after.series("hera_lock_wait_seconds_count") == {(): 2.0}


async def test_a_rate_limited_turn_is_a_refusal(open_api: OpenApi) -> None:
    api = await open_api(rate_limits="on", rate_limit_turns="1/hour")
    sid = await new_session(api)
    assert (await turn(api, sid)).status_code == 200
    assert_json_error(await turn(api, sid), 429, "rate_limited")
    page = await scrape(api)
    assert page.series("hera_refusals_total", "reason", "kind") == {("rate_limit", "turns"): 1.0}
    requests = page.series("hera_http_requests_total", "method", "route", "status")
    assert requests[("POST", f"{SESSION}/messages", "429")] == 1


async def test_a_spent_quota_is_a_refusal(open_api: OpenApi) -> None:
    # Quotas count only with RATE_LIMITS=on; the turn limit stays far away.
    api = await open_api(rate_limits="on", session_max_interview_messages=1)
    sid = await new_session(api)
    assert (await turn(api, sid)).status_code == 200
    assert_json_error(await turn(api, sid), 429, "session_quota_exceeded")
    page = await scrape(api)
    assert page.series("hera_refusals_total", "reason", "kind") == {
        ("quota", "interview_messages"): 1.0
    }
    # The refused turn held the lock and loaded, but made no model call and wrote nothing.
    calls = page.series("hera_model_calls_total", "provider", "model", "kind", "outcome")
    assert calls == {("offline", "offline", "interview", "ok"): 1.0}
    stores = page.series("hera_store_operations_total", "store", "operation", "outcome")
    assert stores[("sessions", "commit", "ok")] == 1
    assert page.value("hera_turns_in_flight") == 0


# ------------------------------------------------------------------------------ bounded labels
GARBAGE_PATHS = (
    "/api/{token}",
    "/api/sessions/{token}/nothing-here",
    "/api/sessions/not-a-uuid-{token}",
    "/{token}/../../etc/passwd",
    "/static-{token}.js",
)
ODD_METHODS = ("GET", "POST", "PROPFIND", "BREW", "DELETE")


def garbage(token: str) -> list[tuple[str, str]]:
    return [(m, p.format(token=token)) for p in GARBAGE_PATHS for m in ODD_METHODS]


async def test_ids_and_paths_never_become_labels(open_api: OpenApi) -> None:
    api = await open_api()

    async def burst(ids: list[str], odd: list[tuple[str, str]]) -> None:
        for sid in ids:
            assert_json_error(await api.get(f"/api/sessions/{sid}"), 404, "session_not_found")
        for method, path in odd:
            response = await api.request(method, path)
            assert 400 <= response.status_code < 500, (method, path, response.status_code)

    # One request of every kind first: the series they create exist from now on.
    await burst([str(uuid.uuid4())], garbage(uuid.uuid4().hex))
    await scrape(api)  # and the scrape's own series
    before = await scrape(api)

    ids = [str(uuid.uuid4()) for _ in range(1000)]
    tokens = [uuid.uuid4().hex for _ in range(2)]  # 2 x 25 = 50 odd requests
    await burst(ids, [request for token in tokens for request in garbage(token)])
    after = await scrape(api)

    assert after.sample_count() == before.sample_count()  # flat: not one series more
    requests = after.series("hera_http_requests_total", "method", "route", "status")
    assert requests[("GET", SESSION, "404")] == 1 + len(ids)
    assert (
        sum(requests.values())
        - sum(before.series("hera_http_requests_total", "method", "route", "status").values())
        == len(ids) + 50 + 1
    )  # and the scrape between
    assert {method for method, _, _ in requests} <= {"GET", "POST", "DELETE", "other"}
    values = after.label_values()
    leaked = [v for v in values if any(secret in v for secret in [*ids, *tokens])]
    assert leaked == []
    assert all(len(v) <= 64 for v in values), sorted(values, key=len)[-1]


# ------------------------------------------------------------------------------ multiprocess
def test_empty_multiprocess_dir_removes_stale_files(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    empty_multiprocess_dir(directory)  # made when missing
    assert directory.is_dir()
    # A dead run's counter (prometheus-client would add it to every scrape), and a dead
    # worker's turns in flight (never marked dead: it was killed).
    labels = ["method", "route", "status"]
    _stale_file(
        directory / "counter_999999.db",
        ("hera_http_requests", "hera_http_requests_total", labels, ["GET", "/api/health", "200"]),
        "HTTP requests answered",
        7.0,
    )
    _stale_file(
        directory / "gauge_livesum_999999.db",
        ("hera_turns_in_flight", "hera_turns_in_flight", [], []),
        "Operations holding a session's lock now",
        3.0,
    )
    (directory / "keep.txt").write_text("not prometheus-client's")
    metrics = Metrics(multiprocess_dir=directory)
    page = Scrape(metrics.exposition().decode())
    assert page.series("hera_http_requests_total", *labels) == {("GET", "/api/health", "200"): 7}
    assert page.value("hera_turns_in_flight") == 3

    empty_multiprocess_dir(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]
    assert Scrape(metrics.exposition().decode()).families == {}


def _stale_file(
    path: Path, series: tuple[str, str, list[str], list[str]], help_text: str, value: float
) -> None:
    """A value file as a worker of an earlier run left it (prometheus-client's own format)."""
    metric, sample, label_names, label_values = series
    make: Any = mmap_dict.MmapedDict  # untyped
    mmaped = make(str(path))
    mmaped.write_value(
        mmap_dict.mmap_key(metric, sample, label_names, label_values, help_text), value, 0.0
    )
    mmaped.close()


MP_REQUESTS_MIN = 60
MP_REQUESTS_MAX = 600
MP_SCRAPES_MIN = 6


@pytest.mark.slow
def test_two_workers_report_one_coherent_set(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    empty_multiprocess_dir(directory)
    env = server_env(
        HERA_DATA_DIR=str(tmp_path / "data"),
        METRICS_ENABLED="true",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    served: Counter[str] = Counter()
    lock = threading.Lock()
    with hera_servers(
        tmp_path / "server", env, workers=2, app_ref="tests.reliability.pid_app:app"
    ) as (server,):

        def unknown_session(_: int) -> None:
            # A new connection per request, which either worker may accept.
            response = httpx.get(f"{server.url}/api/sessions/{uuid.uuid4()}", timeout=30.0)
            assert response.status_code == 404, response.text
            with lock:
                served[response.headers["x-served-by"]] += 1

        with ThreadPoolExecutor(max_workers=8) as pool:
            while sum(served.values()) < MP_REQUESTS_MIN or (
                len(served) < 2 and sum(served.values()) < MP_REQUESTS_MAX
            ):
                list(pool.map(unknown_session, range(20)))
        sent = sum(served.values())
        assert len(served) == 2, f"only {dict(served)} answered:\n{server.log()}"

        scraped_by: Counter[str] = Counter()
        totals: list[float] = []
        while len(totals) < MP_SCRAPES_MIN or (len(scraped_by) < 2 and len(totals) < 200):
            response = httpx.get(f"{server.url}/metrics", timeout=30.0)
            assert response.status_code == 200
            scraped_by[response.headers["x-served-by"]] += 1
            page = Scrape(response.text)
            requests = page.series("hera_http_requests_total", "method", "route", "status")
            totals.append(requests.get(("GET", SESSION, "404"), 0.0))
            latency = histogram_counts(
                page, "hera_http_request_duration_seconds", "method", "route"
            )
            assert latency[("GET", SESSION)] == sent
            assert page.value("hera_turns_in_flight") == 0
        assert set(scraped_by) == set(served), (scraped_by, served)
        assert totals == [float(sent)] * len(totals), (sent, totals, dict(served))
        # Each worker keeps its values in files of its own there (its pid in their names).
        live = {f"gauge_livesum_{pid}.db" for pid in served}
        assert live <= set(_db_files(directory)), _db_files(directory)
        assert {f"counter_{pid}.db" for pid in served} <= set(_db_files(directory))
    # Stopped: each worker marked itself dead, so no live gauge of theirs is left behind.
    assert not [name for name in _db_files(directory) if name.startswith("gauge_live")]


def _db_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.db"))
