"""The demo page in a real headless Chromium: type, press a button, get something playable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from talker_app_tests.talker_server import API_KEY, TalkerServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The page starts playback itself after the fetch; no user-gesture bookkeeping in a headless run.
    "--autoplay-policy=no-user-gesture-required",
]
H264 = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, talker: TalkerServer) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    # The page must work offline: every request it makes has to go to the talker itself.
    page.on("request", lambda r: None if r.url.startswith(talker.url) or r.url.startswith("blob:")
            else outside.append(r.url))
    page.goto(talker.url + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=15_000)
    yield page
    context.close()
    assert outside == [], f"the demo page fetched outside assets: {outside}"


def media_state(page: Page, selector: str) -> dict[str, Any]:
    return page.eval_on_selector(
        selector,
        """el => ({readyState: el.readyState, duration: el.duration, error: el.error && el.error.code,
                   width: el.videoWidth || 0, type: el.dataset.blobType, size: Number(el.dataset.blobSize || 0)})""",
    )


def wait_until_playing(page: Page, selector: str) -> None:
    """The element really decodes and plays the media: its clock runs past the first 0.2 s."""
    page.wait_for_function(
        f"(() => {{ const el = document.querySelector('{selector}'); return !el.paused && el.currentTime > 0.2; }})()",
        timeout=15_000,
    )


def current_frame_stats(page: Page, selector: str) -> dict[str, float]:
    """Mean and spread of the brightness of the frame the video element shows now (drawn to a canvas)."""
    return page.eval_on_selector(
        selector,
        """v => { const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
                  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
                  const d = g.getImageData(0, 0, c.width, c.height).data; let sum = 0, sq = 0; const n = d.length / 4;
                  for (let i = 0; i < d.length; i += 4) {
                    const y = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += y; sq += y * y;
                  }
                  const mean = sum / n; return {mean, std: Math.sqrt(sq / n - mean * mean)}; }""",
    )


def test_talker_demo_page_speaks(page: Page) -> None:
    assert page.locator("#voice option").count() >= 4
    assert page.locator("#emotion option").all_inner_texts() == ["neutral", "happy", "sad", "angry", "surprised"]
    page.fill("#text", "你好，我是值班助手。")
    page.select_option("#voice", "cmn")
    page.select_option("#emotion", "happy")
    page.click("#speak")
    page.wait_for_function("document.querySelector('#audio').readyState >= 1", timeout=15_000)
    state = media_state(page, "#audio")
    assert state["type"] == "audio/wav" and state["size"] > 1000
    assert state["duration"] > 0.3
    assert state["error"] is None
    assert page.locator("#error").is_hidden()
    wait_until_playing(page, "#audio")


def test_talker_demo_page_talks(page: Page) -> None:
    page.fill("#text", "The deployment finished without errors.")
    page.select_option("#avatar", "kai")
    can_play_h264 = page.evaluate(f"document.createElement('video').canPlayType('{H264}')")
    page.click("#talk")
    page.wait_for_function(
        "(() => { const v = document.querySelector('#video');"
        " return v.dataset.blobSize && (v.readyState >= 1 || v.error); })()",
        timeout=20_000,
    )
    state = media_state(page, "#video")
    assert state["type"] == "video/mp4" and state["size"] > 2000
    if can_play_h264:
        assert state["error"] is None
        assert state["width"] > 0 and state["duration"] > 0.5
        wait_until_playing(page, "#video")
        frame = current_frame_stats(page, "#video")
        assert 20 < frame["mean"] < 235 and frame["std"] > 10, frame  # a decoded portrait, not a blank frame
    else:
        # Chromium builds without proprietary codecs cannot decode H.264; the MP4 still arrived intact.
        assert state["error"] == 4  # MEDIA_ERR_SRC_NOT_SUPPORTED


def test_talker_demo_page_shows_api_errors(page: Page) -> None:
    page.fill("#text", "   ")
    page.click("#speak")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=10_000)
    assert "422" in error.inner_text() and "text" in error.inner_text()


def test_talker_demo_page_asks_for_the_api_key_and_keeps_it(browser: Browser, secured: TalkerServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(secured.url + "/")
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert "401" in page.inner_text("#error") and "API key" in page.inner_text("#error")
    assert page.locator("#voice option").count() == 0

    page.fill("#apikey", API_KEY)
    page.dispatch_event("#apikey", "change")
    page.wait_for_selector("body[data-ready='true']", timeout=15_000)
    assert page.locator("#error").is_hidden() and page.locator("#voice option").count() >= 4
    page.fill("#text", "The key works.")
    page.click("#speak")
    wait_until_playing(page, "#audio")

    page.reload()  # the key stays in this browser, so the page works right away next time
    page.wait_for_selector("body[data-ready='true']", timeout=15_000)
    assert page.input_value("#apikey") == API_KEY
    context.close()
