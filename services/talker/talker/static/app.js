// Demo page for the talker API: everything is fetched from this origin, no external assets.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { audioUrl: null, videoUrl: null };
// With TALKER_API_KEYS set every /v1 call needs the key; it stays in this browser (localStorage) only.
const KEY_STORE = "talker.apiKey";

function authHeaders() {
  const key = $("apikey").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// Turn an API error body ({error, field, detail, allowed}) into one readable line.
async function describeError(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!body || !body.error) return `HTTP ${response.status}`;
  let text = `${response.status}: ${body.error}`;
  if (body.field) text += ` (field: ${body.field})`;
  if (body.detail) text += ` — ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
  if (body.allowed) text += ` — allowed: ${body.allowed.join(", ")}`;
  const retry = response.headers.get("Retry-After");
  if (retry) text += ` — retry after ${retry}s`;
  return text;
}

function fillSelect(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    option.selected = value === selected;
    return option;
  }));
}

async function loadChoices() {
  const headers = authHeaders();
  const [voices, avatars] = await Promise.all([fetch("/v1/voices", { headers }), fetch("/v1/avatars", { headers })]);
  if (!voices.ok) throw new Error(await describeError(voices));
  if (!avatars.ok) throw new Error(await describeError(avatars));
  const v = await voices.json();
  const a = await avatars.json();
  fillSelect($("voice"), v.voices.map((x) => [x.id, `${x.name} (${x.language}, ${x.engine})`]), v.default);
  fillSelect($("emotion"), v.emotions.map((e) => [e, e]), "neutral");
  fillSelect($("avatar"), a.avatars.map((x) => [x.id, x.name]), a.default);
}

async function waitUntilReady() {
  const status = $("status");
  for (;;) {
    try {
      const response = await fetch("/readyz");
      const body = await response.json();
      if (response.ok) {
        status.textContent = `Ready on ${body.device} · 服务就绪`;
        status.className = "status ready";
        return;
      }
      status.textContent = `Service not ready (${body.status}) · 服务加载中…`;
    } catch (_) {
      status.textContent = "Service unreachable · 无法连接服务";
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function requestBody(withAvatar) {
  const body = {
    text: $("text").value,
    voice: $("voice").value || undefined,
    emotion: $("emotion").value || "neutral",
    speed: Number($("speed").value),
  };
  if (withAvatar) body.avatar = $("avatar").value || undefined;
  return body;
}

async function render(path, withAvatar, player, urlKey) {
  showError("");
  $("info").textContent = "Working… 生成中…";
  const buttons = [$("speak"), $("talk")];
  buttons.forEach((b) => { b.disabled = true; });
  const started = performance.now();
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(requestBody(withAvatar)),
    });
    if (!response.ok) throw new Error(await describeError(response));
    const blob = await response.blob();
    if (state[urlKey]) URL.revokeObjectURL(state[urlKey]);
    state[urlKey] = URL.createObjectURL(blob);
    player.dataset.blobType = blob.type;
    player.dataset.blobSize = String(blob.size);
    player.src = state[urlKey];
    const seconds = response.headers.get("X-Audio-Seconds");
    const ms = Math.round(performance.now() - started);
    $("info").textContent = `${seconds}s of speech in ${ms} ms (${response.headers.get("Server-Timing") || ""})`;
    player.play().catch(() => { /* autoplay may be blocked; the controls still work */ });
  } catch (err) {
    $("info").textContent = "";
    showError(err.message || String(err));
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// --- stream mode: play while the server is still producing, through Media Source Extensions -----------
// The response's Content-Type names its codecs (video/mp4; codecs="avc1..., mp4a..."), which is exactly
// what MediaSource.addSourceBuffer needs; the body is appended chunk by chunk as it arrives.
function appendTo(buffer, data) {
  return new Promise((resolve, reject) => {
    const done = () => { buffer.removeEventListener("error", failed); resolve(); };
    const failed = () => { buffer.removeEventListener("updateend", done); reject(new Error("the browser could not decode the stream")); };
    buffer.addEventListener("updateend", done, { once: true });
    buffer.addEventListener("error", failed, { once: true });
    buffer.appendBuffer(data);
  });
}

function watchFirstFrame(player, started) {
  const mark = () => { if (!player.dataset.firstFrameMs) player.dataset.firstFrameMs = String(Math.round(performance.now() - started)); };
  if (player.requestVideoFrameCallback) player.requestVideoFrameCallback(mark);  // a frame was presented
  else player.addEventListener("playing", mark, { once: true });  // audio: the first sound
}

async function stream(path, body, player, urlKey) {
  showError("");
  $("info").textContent = "Streaming… 流式生成中…";
  const buttons = [$("speak"), $("talk")];
  buttons.forEach((b) => { b.disabled = true; });
  const started = performance.now();
  ["firstFrameMs", "streamDone", "streamBytes", "blobType", "blobSize"].forEach((k) => { delete player.dataset[k]; });
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(await describeError(response));
    const type = response.headers.get("Content-Type");
    if (!window.MediaSource || !MediaSource.isTypeSupported(type)) {
      await response.body.cancel();
      throw new Error(`this browser cannot play ${type} while it streams; untick Stream`);
    }
    const source = new MediaSource();
    if (state[urlKey]) URL.revokeObjectURL(state[urlKey]);
    state[urlKey] = URL.createObjectURL(source);
    player.src = state[urlKey];
    await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    const buffer = source.addSourceBuffer(type);
    watchFirstFrame(player, started);
    const reader = response.body.getReader();
    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await appendTo(buffer, value);
      if (bytes === 0) player.play().catch(() => { /* autoplay may be blocked; the controls still work */ });
      bytes += value.length;
      player.dataset.streamBytes = String(bytes);
    }
    source.endOfStream();
    player.dataset.streamDone = "true";
    const first = player.dataset.firstFrameMs ? `, first ${player.tagName === "VIDEO" ? "frame" : "sound"} after ${player.dataset.firstFrameMs} ms` : "";
    $("info").textContent = `${source.duration.toFixed(1)}s streamed in ${Math.round(performance.now() - started)} ms${first}`;
  } catch (err) {
    $("info").textContent = "";
    showError(err.message || String(err));
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function speak() {
  if (!$("stream").checked) return render("/v1/tts", false, $("audio"), "audioUrl");
  // OpenAI's speech endpoint streams MP3 as it is synthesized (it takes no emotion).
  const body = requestBody(false);
  return stream("/v1/audio/speech", { model: "tts-1", input: body.text, voice: body.voice, speed: body.speed,
                                      response_format: "mp3" }, $("audio"), "audioUrl");
}

function talk() {
  if (!$("stream").checked) return render("/v1/talk", true, $("video"), "videoUrl");
  return stream("/v1/talk/stream", requestBody(true), $("video"), "videoUrl");
}

$("speak").addEventListener("click", speak);
$("talk").addEventListener("click", talk);
$("form").addEventListener("submit", (event) => event.preventDefault());

async function start() {
  try {
    await loadChoices();
    showError("");
    document.body.dataset.ready = "true";
  } catch (err) {
    const hint = /^40[13]/.test(err.message) ? " — enter the API key above" : "";
    showError(`Could not load voices/avatars: ${err.message}${hint}`);
  }
}

$("apikey").value = localStorage.getItem(KEY_STORE) || "";
$("apikey").addEventListener("change", () => {
  localStorage.setItem(KEY_STORE, $("apikey").value.trim());
  start();
});

(async () => {
  await waitUntilReady();
  await start();
})();
