"""The demo page's stream mode in a real headless Chromium: it plays while the server is still producing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from talker_app_tests.talker_server import TalkerServer
from talker_app_tests.test_talker_demo_page import CHROMIUM, CHROMIUM_ARGS, current_frame_stats

# About a minute of speech at speed 0.8 (under the stream server's 1000-character limit).
MINUTE_TEXT = " ".join(["The deployment finished without errors and every check is green again."] * 12)
MINUTE_SPEED = "0.8"


@pytest.fixture(scope="module")
def stream_browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(stream_browser: Browser, stream_talker: TalkerServer) -> Iterator[Page]:
    context = stream_browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(stream_talker.url) or r.url.startswith("blob:")
            else outside.append(r.url))
    page.goto(stream_talker.url + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=15_000)
    page.check("#stream")
    yield page
    context.close()
    assert outside == [], f"the demo page fetched outside assets: {outside}"


def dataset(page: Page, selector: str) -> dict[str, str]:
    return page.eval_on_selector(selector, "el => Object.assign({}, el.dataset)")


def test_talker_demo_page_stream_shows_the_first_frame_before_the_server_has_finished(
        page: Page, stream_talker: TalkerServer) -> None:
    completed_before = stream_talker.value("talker_streams_ended_total", kind="video", outcome="completed")
    page.fill("#text", MINUTE_TEXT)
    page.fill("#speed", MINUTE_SPEED)
    page.select_option("#avatar", "mei")
    page.click("#talk")
    page.wait_for_function("document.querySelector('#video').dataset.firstFrameMs", timeout=20_000)
    # The server's view at the moment the page has shown its first frame: this stream has not completed and
    # its producer still holds the slot, i.e. it is still rendering and encoding the rest of the minute.
    samples = stream_talker.samples()
    assert samples[("talker_streams_ended_total",
                    frozenset({("kind", "video"), ("outcome", "completed")}))] == completed_before
    assert samples[("talker_active_sessions", frozenset())] == 1
    assert samples[("talker_streams_active", frozenset({("kind", "video")}))] == 1
    shown_at = time.monotonic()
    first_frame_ms = int(dataset(page, "#video")["firstFrameMs"])

    # Then the server finishes; the page has the whole minute and keeps playing.
    deadline = shown_at + 60
    while stream_talker.value("talker_streams_ended_total", kind="video", outcome="completed") == completed_before:
        assert time.monotonic() < deadline, "the stream never completed"
        time.sleep(0.05)
    page.wait_for_function("document.querySelector('#video').dataset.streamDone === 'true'", timeout=20_000)
    state = page.eval_on_selector(
        "#video", "v => ({duration: v.duration, time: v.currentTime, paused: v.paused, error: v.error && v.error.code,"
                  " width: v.videoWidth})")
    assert state["error"] is None and state["width"] == 256 and not state["paused"], state
    assert 50 < state["duration"] < 75, state  # the whole minute arrived through the MediaSource
    assert 0 < first_frame_ms < 10_000
    page.wait_for_function("document.querySelector('#video').currentTime > 0.5", timeout=10_000)
    frame = current_frame_stats(page, "#video")
    assert 20 < frame["mean"] < 235 and frame["std"] > 10, frame  # a decoded portrait, not a blank frame
    assert page.locator("#error").is_hidden()
    assert "streamed" in page.inner_text("#info")


def test_talker_demo_page_stream_speaks_mp3_while_it_is_synthesized(page: Page) -> None:
    page.fill("#text", "Streaming speech plays as soon as the first piece exists.")
    page.click("#speak")
    page.wait_for_function("document.querySelector('#audio').dataset.streamDone === 'true'", timeout=20_000)
    page.wait_for_function(
        "(() => { const a = document.querySelector('#audio'); return !a.paused && a.currentTime > 0.2; })()",
        timeout=15_000,
    )
    data = dataset(page, "#audio")
    assert int(data["streamBytes"]) > 5000 and int(data["firstFrameMs"]) > 0
    assert page.locator("#error").is_hidden()
