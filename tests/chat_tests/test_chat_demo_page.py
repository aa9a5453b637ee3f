"""The demo page's conversation panel in a real headless Chromium, against a real talker and the real LLM stand-in:
typed and spoken (Chromium's fake microphone fed with espeak-ng's voice) turns, the reply growing, the answer heard
while it is still being produced."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_tests.asr_speech import espeak_pcm
from chat_tests.chat_ws_client import API_KEY, ChatStack
from llm_standin.server import LLMStandin
from playwright.sync_api import Browser, Page, sync_playwright
from talker_app_tests.conftest import run_talker
from talker_app_tests.test_talker_demo_page import CHROMIUM, CHROMIUM_ARGS

# Slow enough that the answer takes seconds to write: 0.3 s to the first token, then 8 tokens/s.
REPLY = ("Hello there. This is the second sentence of a longer answer, and it goes on for a while. "
         "A third sentence comes last.")
LEAD_SILENCE_S, TAIL_SILENCE_S = 0.5, 4.0  # around the utterance in the fake microphone's (looping) file
PCM_BYTES_PER_S = 24_000 * 2


@pytest.fixture(scope="module")
def page_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStack]:
    standin = LLMStandin(replies=[REPLY], first_token_delay=0.3, tokens_per_second=8.0)
    standin.start()
    try:
        with run_talker(tmp_path_factory, "chat_page_talker", TALKER_LLM_BASE_URL=standin.openai_base_url,
                        TALKER_API_KEYS=API_KEY, TALKER_MAX_CONCURRENCY="2", TALKER_MAX_QUEUE="4") as server:
            yield ChatStack(talker=server, llm=standin)
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """espeak-ng saying the test utterance, with silence around it, as the fake microphone's WAV file; and the
    moment (seconds into the file) the utterance is over."""
    pcm, rate = espeak_pcm()
    lead, tail = b"\0\0" * int(rate * LEAD_SILENCE_S), b"\0\0" * int(rate * TAIL_SILENCE_S)
    path = tmp_path_factory.mktemp("microphone") / "question.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(lead + pcm + tail)
    return path, LEAD_SILENCE_S + len(pcm) / 2 / rate


@pytest.fixture(scope="module")
def chat_browser(microphone_wav: tuple[Path, float]) -> Iterator[Browser]:
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav[0]}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(chat_browser: Browser, page_stack: ChatStack) -> Iterator[Page]:
    url = page_stack.talker.url
    context = chat_browser.new_context()
    context.grant_permissions(["microphone"], origin=url)
    # The key as the page keeps it (localStorage): it loads the voices with it and offers it to the WebSocket.
    context.add_init_script(f"localStorage.setItem('talker.apiKey', {API_KEY!r});")
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((url, "blob:")) else outside.append(r.url))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=15_000)
    yield page
    context.close()
    assert outside == [], f"the demo page fetched outside assets: {outside}"
    assert set(sockets) <= {url.replace("http://", "ws://") + "/v1/chat/ws"}, sockets


def panel(page: Page) -> dict[str, str]:
    return page.eval_on_selector("#chat", "el => Object.assign({}, el.dataset)")


def last_reply(page: Page) -> str:
    return page.eval_on_selector("#chat-log", "log => (log.querySelector('li.reply:last-of-type') || {}).textContent")


def wait_turn_end(page: Page) -> dict[str, str]:
    page.wait_for_selector("#chat-log li.reply[data-done='true']", timeout=40_000)
    return panel(page)


def test_chat_page_typed_turn_grows_and_is_heard_while_it_is_written(page: Page, page_stack: ChatStack) -> None:
    completed = page_stack.talker.value("talker_chat_turns_total", input="text", outcome="completed")
    page.fill("#chat-text", "What can you do?")
    page.click("#chat-send")
    page.wait_for_function(
        "(() => { const r = document.querySelector('#chat-log li.reply'); return r && r.textContent.length > 0; })()",
        timeout=15_000)
    early = last_reply(page)
    # The first words are shown while the stand-in is still writing (8 tokens/s: seconds to go).
    assert early and REPLY.startswith(early) and len(early) < len(REPLY) // 2, early
    state = wait_turn_end(page)
    assert last_reply(page) == REPLY
    assert page.inner_text("#chat-log li.user") == "What can you do?"
    assert state["outcome"] == "completed" and state["sessionId"], state
    # The answer was playing before the turn ended: part of it already heard, not all of it.
    scheduled_s = int(state["audioBytes"]) / PCM_BYTES_PER_S
    assert 3.0 < scheduled_s < 20.0, state
    assert state["audioState"] == "running" and 0.5 < float(state["audioPlayedAtEnd"]) < scheduled_s - 0.5, state
    assert "first audio" in page.inner_text("#chat-info")
    assert page.locator("#error").is_hidden()
    assert page_stack.talker.value("talker_chat_turns_total", input="text", outcome="completed") == completed + 1


def test_chat_page_spoken_turn_from_the_microphone(page: Page, page_stack: ChatStack,
                                                   microphone_wav: tuple[Path, float]) -> None:
    completed = page_stack.talker.value("talker_chat_turns_total", input="audio", outcome="completed")
    page.click("#chat-mic")
    page.wait_for_selector("#chat[data-recording='true']", timeout=10_000)
    # Recorded until the utterance is over (the file has silence after it), then sent.
    spoken_ms = int((microphone_wav[1] + 2.0) * 1000)
    page.wait_for_function(f"Number(document.querySelector('#chat').dataset.micMs) >= {spoken_ms}", timeout=20_000)
    page.click("#chat-mic")
    page.wait_for_selector("#chat[data-recording='false']", timeout=10_000)
    assert int(panel(page)["micBytes"]) > 2000
    state = wait_turn_end(page)
    heard = page.inner_text("#chat-log li.user")
    # pocketsphinx hears espeak's voice through Chromium's capture and opus with a few words wrong: "weather" holds.
    assert "weather" in heard and "🎤" not in heard, (heard, state, page.inner_text("#error"))
    assert last_reply(page) == REPLY and state["outcome"] == "completed", state
    assert 3.0 < int(state["audioBytes"]) / PCM_BYTES_PER_S < 20.0, state
    assert "ASR" in page.inner_text("#chat-info")
    assert page.locator("#error").is_hidden()
    assert page_stack.talker.value("talker_chat_turns_total", input="audio", outcome="completed") == completed + 1


def test_chat_page_video_answer_plays_the_talking_head(page: Page, page_stack: ChatStack) -> None:
    page.check("#chat-video")
    page.fill("#chat-text", "Show yourself.")
    page.click("#chat-send")
    # The sentences' fragmented MP4s go into one MediaSource and play (its clock runs).
    page.wait_for_function(
        "(() => { const v = document.querySelector('#chat-player'); return !v.paused && v.currentTime > 0.2; })()",
        timeout=30_000)
    state = wait_turn_end(page)
    page.wait_for_function("document.querySelector('#chat').dataset.videoDone === 'true'", timeout=20_000)
    video = page.eval_on_selector(
        "#chat-player", "v => ({duration: v.duration, width: v.videoWidth, error: v.error && v.error.code})")
    assert state["outcome"] == "completed" and int(panel(page)["videoBytes"]) > 20_000, state
    assert video["error"] is None and video["width"] == 256 and 3.0 < video["duration"] < 20.0, video
    assert state.get("audioBytes") == "0"  # the answer's sound came inside the video, not as PCM
    assert page.locator("#error").is_hidden()


def test_chat_page_new_message_cuts_the_answer_still_playing(page: Page, page_stack: ChatStack) -> None:
    cancelled = page_stack.talker.value("talker_chat_turns_total", input="text", outcome="cancelled")
    page.fill("#chat-text", "Tell me a long story.")
    page.press("#chat-text", "Enter")
    page.wait_for_function("Number(document.querySelector('#chat').dataset.audioBytes) > 0", timeout=15_000)
    page.fill("#chat-text", "Stop, a shorter one.")
    page.press("#chat-text", "Enter")
    page.wait_for_selector("#chat-log li.reply[data-turn='2'][data-done='true']", timeout=40_000)
    first = page.locator("#chat-log li.reply[data-turn='1']")
    # The first answer was cut: never finished on the page, its text stops where the barge-in came.
    assert first.get_attribute("data-done") is None and len(first.inner_text()) < len(REPLY)
    assert last_reply(page) == REPLY and panel(page)["outcome"] == "completed"
    assert page.locator("#chat-log li.user").all_inner_texts() == ["Tell me a long story.", "Stop, a shorter one."]
    assert page_stack.talker.value("talker_chat_turns_total", input="text", outcome="cancelled") == cancelled + 1
