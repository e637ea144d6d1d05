"""The single-page UI (`app/static/`) in a real Chromium, against a real server process.

The journey test clicks and types through everything a person does: the scripted interview,
a photo, the portraits, the family chat until the story and the letter, then a reload that
restores it all from the API. The CORS test serves the same page from a second origin and
checks that the API answers it only when that origin is in ALLOWED_ORIGINS.

Needs Debian's Chromium (`apt-get install chromium`) and the `playwright` pip package (its
bundled driver only: no `playwright install`, no browser download). Without them the browser
tests skip, or fail under HERA_TEST_REQUIRE_SERVICES=1. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from app.main import STATIC_DIR
from tests.api.conftest import open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import SCRIPT
from tests.support.polling import wait_for_http
from tests.support.services import free_port, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAMILY_SCRIPT = (
    "沖縄に行きたいな！",
    "海で泳いだり、水族館に行ったりしたい！",
    "いいね、そうしよう！",
)
STARTUP_SECONDS = 30.0
TURN_MS = 30_000  # one request of the offline brains, with a wide margin for slow machines
NETWORK_ERROR_TEXT = "サーバーに接続できませんでした"
ALL_IMAGES_LOADED = """() => {
  const images = [...document.querySelectorAll("img")];
  return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


# ------------------------------------------------------------------ servers
@contextmanager
def api_server(data_dir: Path, **env_overrides: str) -> Iterator[str]:
    """`uvicorn app.main:app` as a subprocess on a free loopback port; yields its base URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "SESSION_TYPE", "STORAGE_MODE", "GEMINI_API_KEY"}
        and key not in {"ALLOWED_ORIGINS", "CORS_ALLOW_CREDENTIALS"}
    }
    env.update({"HERA_DATA_DIR": str(data_dir), "LLM_PROVIDER": "offline", **env_overrides})
    base = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    command.extend(["--port", str(port), "--log-level", "warning"])
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(base, process, log_path)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    try:
        wait_for_http(
            f"{base}/api/health",
            within=STARTUP_SECONDS,
            process=process,
            describe=log_path.read_text,
        )
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(str(exc))


@contextmanager
def ui_server(port: int, api_base: str) -> Iterator[str]:
    """`app/static` from a second origin (`port`), with `window.HERA_API_BASE` injected."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(STATIC_DIR), **kwargs)

        def do_GET(self) -> None:
            if urlparse(self.path).path not in ("/", "/index.html"):
                super().do_GET()
                return
            config = f"<script>window.HERA_API_BASE = {json.dumps(api_base)};</script>\n"
            html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
            body = html.replace("<script src=", config + "  <script src=", 1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # reuses the address
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ------------------------------------------------------------------ browser
@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright module is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def watch_page_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def send(page: Page, chat: str, text: str) -> None:
    """Type into a chat and send; wait until the API accepted it (the box is emptied)."""
    from playwright.sync_api import expect

    box = page.get_by_test_id(f"{chat}-input")
    box.fill(text)
    page.get_by_test_id(f"{chat}-send").click()  # the indicator shows from this click on
    expect(page.get_by_test_id(f"{chat}-typing")).to_be_hidden(timeout=TURN_MS)
    banner = page.get_by_test_id("error-banner")
    assert banner.is_hidden(), page.get_by_test_id("error-message").inner_text()
    expect(box).to_have_value("")


def assert_no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"page is {overflow}px wider than the viewport"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# ------------------------------------------------------------------ served by the app
async def test_ui_is_served_at_root_and_api_paths_stay_json(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async for api in open_client(stack_settings("file-disk", tmp_path, request)):
        root = await api.get("/")
        assert root.status_code == 200
        assert root.headers["content-type"].startswith("text/html")
        assert 'data-testid="start-button"' in root.text
        for asset, kind in (("/app.js", "javascript"), ("/style.css", "text/css")):
            response = await api.get(asset)
            assert response.status_code == 200 and kind in response.headers["content-type"]
        for path in ("/api/nothing-here", "/api", "/api/app.js", "/missing.html"):
            response = await api.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/json", path
            assert response.json()["error"], path
        wrong_method = await api.put("/api/sessions")
        assert wrong_method.status_code == 405 and wrong_method.json()["error"]


# ------------------------------------------------------------------ the journey
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_whole_journey_in_chromium(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import Route, expect

    photo = tmp_path / "me.jpg"
    photo.write_bytes(jpeg_photo())
    with api_server(tmp_path / "api") as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP")
        page = context.new_page()
        page_errors = watch_page_errors(page)
        page.goto(f"{base}/")
        page.get_by_test_id("start-button").click()
        expect(page.get_by_test_id("interview-view")).to_be_visible()
        session_id = parse_qs(urlparse(page.url).query)["session"][0]
        expect(page.get_by_test_id("missing-list").locator("li").first).to_have_text("年齢")
        expect(page.get_by_test_id("progress-groups").locator("li")).to_have_count(4)

        # A failing request: typing indicator while it runs, readable error, text kept.
        held: list[Route] = []
        page.route("**/messages", lambda route: held.append(route))
        box = page.get_by_test_id("interview-input")
        box.fill(SCRIPT[0])
        page.get_by_test_id("interview-send").click()
        expect(page.get_by_test_id("interview-typing")).to_be_visible()
        expect(page.get_by_test_id("interview-send")).to_be_disabled()
        expect(box).to_have_value(SCRIPT[0])
        assert len(held) == 1
        held[0].fulfill(
            status=503,
            content_type="application/json",
            body=json.dumps({"error": "ただいま混み合っています。", "code": "busy"}),
        )
        expect(page.get_by_test_id("error-message")).to_have_text("ただいま混み合っています。")
        expect(page.get_by_test_id("interview-typing")).to_be_hidden()
        expect(page.get_by_test_id("interview-send")).to_be_enabled()
        expect(box).to_have_value(SCRIPT[0])
        expect(page.locator(".message--pending")).to_have_count(0)
        page.unroute("**/messages")

        # A network failure: the same, with a message saying so.
        page.route("**/messages", lambda route: route.abort("internetdisconnected"))
        page.get_by_test_id("interview-send").click()
        expect(page.get_by_test_id("error-message")).to_contain_text(NETWORK_ERROR_TEXT)
        expect(box).to_have_value(SCRIPT[0])
        page.unroute("**/messages")

        # The scripted interview, until the profile is complete.
        for message in SCRIPT:
            send(page, "interview", message)
            expect(page.get_by_test_id("interview-log")).to_contain_text(message)
            if page.get_by_test_id("images-view").is_visible():
                break
        else:
            pytest.fail("the interview never completed in the UI")
        expect(page.get_by_test_id("missing-none")).to_be_visible()
        expect(page.get_by_test_id("missing-list").locator("li")).to_have_count(0)
        expect(page.get_by_test_id("progress-percent")).to_have_text("100%")
        screenshot(page, "ui-interview.png")

        # Photo and portraits.
        page.get_by_test_id("photo-input").set_input_files(str(photo))
        expect(page.get_by_test_id("image-user")).to_be_visible(timeout=TURN_MS)
        page.get_by_test_id("generate-partner").click()
        expect(page.get_by_test_id("image-partner")).to_be_visible(timeout=TURN_MS)
        page.get_by_test_id("generate-children").click()
        expect(page.locator("[data-testid^='image-child_']")).to_have_count(2, timeout=TURN_MS)
        expect(page.get_by_test_id("gallery")).to_contain_text("太郎")

        # Complete the interview and meet the family.
        page.get_by_test_id("complete-interview").click()
        expect(page.get_by_test_id("family-view")).to_be_visible(timeout=TURN_MS)
        expect(page.get_by_test_id("family-members").locator("li")).to_have_count(3)

        send(page, "family", FAMILY_SCRIPT[0])
        expect(page.get_by_test_id("trip-destination")).to_have_text("沖縄")
        send(page, "family", FAMILY_SCRIPT[1])
        expect(page.get_by_test_id("trip-activities").locator("li")).to_have_count(2)
        expect(page.get_by_test_id("proposal-hint")).to_be_visible()
        family_names = page.locator(
            "[data-testid='family-log'] .message:not(.message--user) .message__name"
        )
        assert family_names.count() >= 2
        for label in family_names.all_text_contents():
            assert re.fullmatch(r".+（.+）", label), label  # "name（role）"
        screenshot(page, "ui-family.png")

        send(page, "family", FAMILY_SCRIPT[2])
        expect(page.get_by_test_id("plan-view")).to_be_visible()
        expect(page.get_by_test_id("proposal-hint")).to_be_hidden()
        letter = page.get_by_test_id("plan-letter").inner_text()
        story = page.get_by_test_id("plan-story").inner_text()
        assert len(letter) >= 300 and len(story) >= 500, (letter, story)
        page.wait_for_function(ALL_IMAGES_LOADED, timeout=TURN_MS)
        assert page.locator("img").count() >= 4
        page.get_by_test_id("plan-view").scroll_into_view_if_needed()
        screenshot(page, "ui-letter.png")
        assert page_errors == []
        context.close()

        # Reload at phone size: everything comes back from the API.
        phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="ja-JP")
        page = phone.new_page()
        page_errors = watch_page_errors(page)
        page.goto(f"{base}/?session={session_id}")
        expect(page.get_by_test_id("family-view")).to_be_visible(timeout=TURN_MS)
        expect(page.get_by_test_id("plan-letter")).to_have_text(letter, use_inner_text=True)
        expect(page.get_by_test_id("plan-story")).to_have_text(story, use_inner_text=True)
        for message in FAMILY_SCRIPT:
            expect(page.get_by_test_id("family-log")).to_contain_text(message)
        expect(page.get_by_test_id("interview-history-log")).to_contain_text(SCRIPT[0])
        expect(page.get_by_test_id("trip-destination")).to_have_text("沖縄")
        expect(page.locator("[data-testid^='image-']")).to_have_count(4)
        page.wait_for_function(ALL_IMAGES_LOADED, timeout=TURN_MS)
        assert_no_horizontal_scroll(page)
        screenshot(page, "ui-letter-mobile.png")
        page.set_viewport_size({"width": 375, "height": 812})
        assert_no_horizontal_scroll(page)
        assert page_errors == []

        # An interview half done restores too, at the narrowest phone width.
        page.goto(f"{base}/")
        page.get_by_test_id("start-button").click()
        send(page, "interview", SCRIPT[0])
        page.reload()
        expect(page.get_by_test_id("interview-log")).to_contain_text(SCRIPT[0])
        expect(page.get_by_test_id("missing-list")).to_contain_text("お住まいの地域")
        assert_no_horizontal_scroll(page)
        screenshot(page, "ui-interview-mobile.png")
        phone.close()


# ------------------------------------------------------------------ CORS
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_ui_on_another_origin_works_only_when_that_origin_is_allowed(
    browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    ui_port = free_port()  # the UI's origin must be known before the allowing API starts
    origin = f"http://127.0.0.1:{ui_port}"
    with (
        api_server(tmp_path / "allowed", ALLOWED_ORIGINS=origin) as allowed,
        api_server(tmp_path / "denied") as denied,
    ):
        with ui_server(ui_port, allowed) as ui:
            page = browser.new_page()
            page.goto(f"{ui}/")
            assert page.evaluate("window.location.origin") == origin != allowed
            page.get_by_test_id("start-button").click()
            expect(page.get_by_test_id("interview-view")).to_be_visible(timeout=TURN_MS)
            send(page, "interview", SCRIPT[0])  # JSON body: a preflighted request
            expect(page.get_by_test_id("interview-log").locator(".message--hera")).to_have_count(1)
            page.close()

        with ui_server(ui_port, denied) as ui:
            page = browser.new_page()
            page.goto(f"{ui}/")
            page.get_by_test_id("start-button").click()
            expect(page.get_by_test_id("error-message")).to_contain_text(NETWORK_ERROR_TEXT)
            expect(page.get_by_test_id("interview-view")).to_be_hidden()
            expect(page.get_by_test_id("start-view")).to_be_visible()
            page.close()

        # The denial is the API's CORS answer, not a dead server.
        refused = httpx.post(f"{denied}/api/sessions", headers={"Origin": origin})
        assert refused.status_code == 201
        assert "access-control-allow-origin" not in refused.headers
        accepted = httpx.post(f"{allowed}/api/sessions", headers={"Origin": origin})
        assert accepted.headers["access-control-allow-origin"] == origin


# ------------------------------------------------------------------ streaming
STREAMED_REPLY = (
    "ありがとうございます。32歳の女性で、今はおひとりなのですね。"
    "これからあなたの未来の家族を一緒に思い描いていきましょう。どちらにお住まいですか？"
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_streamed_reply_shows_as_it_is_written_and_a_broken_stream_falls_back_to_json(
    browser: Browser, tmp_path: Path
) -> None:
    """Gemini (the fake, streaming a few characters every 80 ms) writes Hera's reply: the UI
    shows the reply growing while the model is still writing, then the stored turn. A stream
    that breaks off before `done` is sent again as JSON with the same Idempotency-Key."""
    from playwright.sync_api import Route, expect

    from tests.support.fake_gemini import json_text_body, start_fake_gemini

    with start_fake_gemini() as fake:
        fake.responder = lambda _: (
            200,
            json_text_body({"reply": STREAMED_REPLY, "extracted": {"age": 32}}),
        )
        fake.stream_first_delay, fake.stream_interval, fake.stream_piece_chars = 0.2, 0.08, 4
        total = (
            len(json.dumps({"reply": STREAMED_REPLY, "extracted": {"age": 32}}, ensure_ascii=False))
            // 4
            + 1
        )
        server_env = {
            "LLM_PROVIDER": "gemini",
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": fake.base_url,
        }
        with api_server(tmp_path / "api", **server_env) as base:
            page = browser.new_page(locale="ja-JP")
            page_errors = watch_page_errors(page)
            page.goto(f"{base}/")
            page.get_by_test_id("start-button").click()
            expect(page.get_by_test_id("interview-view")).to_be_visible(timeout=TURN_MS)

            page.get_by_test_id("interview-input").fill(SCRIPT[0])
            page.get_by_test_id("interview-send").click()
            growing = page.get_by_test_id("streaming-message")
            expect(growing).to_be_visible(timeout=TURN_MS)
            expect(growing.locator(".message__text")).to_contain_text("ありがとう")
            # Shown while the model is still writing: the fake has pieces left to send, and
            # the turn is not over (the send button waits for it).
            assert len(fake.pieces) < total, (len(fake.pieces), total)
            expect(page.get_by_test_id("interview-send")).to_be_disabled()
            shown = growing.locator(".message__text").inner_text()
            assert STREAMED_REPLY.startswith(shown) and shown != STREAMED_REPLY, shown

            expect(growing).to_have_count(0, timeout=TURN_MS)  # `done`: the stored turn
            hera = page.get_by_test_id("interview-log").locator(".message--hera")
            expect(hera.last).to_contain_text(STREAMED_REPLY)
            expect(page.get_by_test_id("interview-input")).to_have_value("")
            assert len(fake.requests) == 1 and fake.requests[0].streamed

            # A stream that breaks off after one piece: the UI asks again as plain JSON.
            accepts: list[str] = []

            def broken_stream(route: Route) -> None:
                accept = route.request.headers.get("accept", "")
                accepts.append(accept)
                if "text/event-stream" not in accept:
                    route.continue_()
                    return
                piece = {"speaker": "hera", "line": 0, "text": "ありが"}
                body = f"event: delta\r\ndata: {json.dumps(piece, ensure_ascii=False)}\r\n\r\n"
                route.fulfill(status=200, content_type="text/event-stream", body=body)

            page.route("**/messages", broken_stream)
            send(page, "interview", SCRIPT[1])
            assert ["text/event-stream" in a for a in accepts] == [True, False], accepts
            expect(hera).to_have_count(2)  # one reply per stored turn: the JSON retry's too
            expect(page.get_by_test_id("interview-log")).to_contain_text(SCRIPT[1])
            expect(page.get_by_test_id("streaming-message")).to_have_count(0)
            assert [r.streamed for r in fake.requests] == [True, False]
            page.unroute("**/messages")
            assert page_errors == []
            page.close()
