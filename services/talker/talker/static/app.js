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

// --- conversation: /v1/chat/ws ------------------------------------------------------------------------------
// One WebSocket per page (opened on the first message, the API key in the subprotocol `talker.key.<key>`, since a
// browser cannot set headers on a WebSocket). The reply text grows with each reply_delta; the answer's speech
// (16-bit PCM, 24 kHz) is played through Web Audio as its frames arrive, each chunk scheduled right after the last.
// The panel's data attributes (audioBytes, audioPlayedAtEnd, ...) let tests see what was played and when.
const chat = {
  ws: null, opening: null, sessionId: null,
  awaiting: false,     // a user turn was sent and its turn_start has not come: older turns' media is dropped
  turn: null,          // the turn now answering (its number)
  media: null,         // the media event whose binary frames follow
  bubbles: null,       // {user, reply} of the turn now answering
  audio: null, nextAt: 0, turnFirstAt: null, carry: null, sources: new Set(),
  recorder: null,
  video: null,         // {source, buffer, queue, ended, bytes}: the MediaSource of the turn now answering (output video)
};

function chatData(values) { Object.assign($("chat").dataset, values); }

function chatUrl() { return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/chat/ws`; }

function chatConfig() {
  const message = { type: "config", output: $("chat-video").checked ? "video" : "audio",
                    emotion: $("emotion").value || "neutral" };
  if ($("voice").value) message.voice = $("voice").value;
  if ($("avatar").value) message.avatar = $("avatar").value;
  if (chat.sessionId) message.session_id = chat.sessionId;  // a reconnect keeps the conversation's history
  return message;
}

function closeChat() {
  if (chat.ws) chat.ws.close(1000);
  chat.ws = null;
  chat.opening = null;
}

function openChat() {
  if (chat.ws && chat.opening) return chat.opening;
  const key = $("apikey").value.trim();
  const protocols = ["talker.chat"];
  if (key) protocols.push(`talker.key.${key}`);
  let ws;
  try {
    ws = new WebSocket(chatUrl(), protocols);
  } catch (err) {
    return Promise.reject(new Error(`cannot connect: ${err.message} (an API key has letters, digits, - and _ only)`));
  }
  ws.binaryType = "arraybuffer";
  chat.ws = ws;
  chat.opening = new Promise((resolve, reject) => {
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify(chatConfig()));
      chatData({ connected: "true" });
      resolve(ws);
    };
    ws.onclose = (event) => {
      if (chat.ws === ws) { chat.ws = null; chat.opening = null; }
      chatData({ connected: "false" });
      if (!opened) {
        reject(new Error("the conversation could not connect (a wrong API key is refused at the handshake)"));
      } else if (event.code !== 1000) {
        showError(`Conversation closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`);
      }
    };
  });
  ws.onmessage = (event) => {
    if (chat.ws !== ws) return;
    if (typeof event.data === "string") chatEvent(JSON.parse(event.data));
    else chatMedia(event.data);
  };
  return chat.opening;
}

function chatBubble(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

// A new user turn: what is still playing stops (barge-in) and older turns' frames are dropped from now on.
function beginUserTurn(userText) {
  for (const source of chat.sources) { try { source.stop(); } catch (_) { /* not started */ } }
  chat.sources.clear();
  chat.nextAt = 0;
  chat.carry = null;
  chat.awaiting = true;
  chat.media = null;
  if (chat.video) { chat.video = null; $("chat-player").pause(); }
  chat.bubbles = { user: chatBubble("user", userText), reply: null };
  showError("");
  $("chat-info").textContent = "";
}

function chatAudio() {
  if (!chat.audio) chat.audio = new AudioContext();
  // Made or resumed from a click, so that browsers allow it to play.
  if (chat.audio.state === "suspended") chat.audio.resume().catch(() => { /* stays suspended */ });
  return chat.audio;
}

function chatEvent(event) {
  switch (event.type) {
    case "ready":
      chat.sessionId = event.session_id;
      chatData({ sessionId: event.session_id });
      break;
    case "turn_start":
      chat.awaiting = false;
      chat.turn = event.turn;
      chat.media = null;
      chat.turnFirstAt = null;
      chat.video = null;
      if (!chat.bubbles) chat.bubbles = { user: chatBubble("user", ""), reply: null };
      chat.bubbles.reply = chatBubble("reply", "");
      chat.bubbles.reply.dataset.turn = String(event.turn);
      chatData({ turn: String(event.turn), audioBytes: "0", replyChars: "0", outcome: "" });
      break;
    case "transcript":
      if (event.turn === chat.turn && chat.bubbles) chat.bubbles.user.textContent = event.text;
      break;
    case "reply_delta":
      if (event.turn === chat.turn && chat.bubbles && chat.bubbles.reply) {
        chat.bubbles.reply.textContent += event.text;
        chatData({ replyChars: String(chat.bubbles.reply.textContent.length) });
      }
      break;
    case "media":
      if (!chat.awaiting && event.turn === chat.turn) chat.media = event;
      break;
    case "turn_end":
      if (event.turn !== chat.turn) break;
      chatTurnEnd(event);
      break;
    case "error": {
      let text = `Conversation: ${event.error}`;
      if (event.field) text += ` (field: ${event.field})`;
      if (event.detail) text += ` — ${event.detail}`;
      if (event.retry_after_s) text += ` — retry after ${event.retry_after_s}s`;
      showError(text);
      break;
    }
    default:
      break;
  }
}

function chatTurnEnd(event) {
  const played = chat.audio && chat.turnFirstAt !== null ? Math.max(0, chat.audio.currentTime - chat.turnFirstAt) : 0;
  chatData({
    outcome: event.outcome,
    audioPlayedAtEnd: played.toFixed(3),  // seconds of this turn's answer already heard when its turn_end came
    audioState: chat.audio ? chat.audio.state : "none",
  });
  if (chat.bubbles && chat.bubbles.reply) chat.bubbles.reply.dataset.done = "true";
  if (chat.video) {
    chat.video.ended = true;
    chatVideoPump(chat.video);
  }
  chat.media = null;
  chat.bubbles = null;
  const t = event.timings || {};
  const ms = (s) => (typeof s === "number" ? `${Math.round(s * 1000)} ms` : "–");
  const asr = typeof t.asr === "number" ? `ASR ${ms(t.asr)}, ` : "";
  $("chat-info").textContent = `${event.outcome}: ${asr}LLM first token ${ms(t.llm_ttft)}, first audio ${ms(t.first_audio)}`
    + `, total ${ms(t.total)}`;
}

// Binary frames: 16-bit little-endian mono PCM, any length (an odd byte waits for the next frame).
// output "video": every sentence is a fragmented MP4 (its own init segment); one SourceBuffer in "sequence" mode
// takes them all, appended one after the other.
function chatVideoPump(video) {
  if (!video.buffer || video.buffer.updating) return;
  if (video.queue.length) {
    video.buffer.appendBuffer(video.queue.shift());
  } else if (video.ended && video.source.readyState === "open") {
    video.source.endOfStream();
    chatData({ videoDone: "true" });
  }
}

function chatVideo(media) {
  if (chat.video) return chat.video;
  const player = $("chat-player");
  const video = { source: new MediaSource(), buffer: null, queue: [], ended: false, bytes: 0 };
  chat.video = video;
  player.hidden = false;
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(video.source);
  video.source.addEventListener("sourceopen", () => {
    video.buffer = video.source.addSourceBuffer(media.mime_type);
    video.buffer.mode = "sequence";
    video.buffer.addEventListener("updateend", () => chatVideoPump(video));
    video.buffer.addEventListener("error", () => showError("the browser could not decode the answer's video"));
    chatVideoPump(video);
  }, { once: true });
  player.play().catch(() => { /* autoplay may be blocked; the controls still work */ });
  chatData({ videoBytes: "0", videoDone: "false" });
  return video;
}

function chatMedia(data) {
  const media = chat.media;
  if (chat.awaiting || !media || media.turn !== chat.turn) return;
  if (media.kind === "video") {
    const video = chatVideo(media);
    video.queue.push(data);
    video.bytes += data.byteLength;
    chatData({ videoBytes: String(video.bytes) });
    chatVideoPump(video);
    return;
  }
  if (media.kind !== "audio") return;
  let bytes = new Uint8Array(data);
  if (chat.carry) {
    const joined = new Uint8Array(chat.carry.length + bytes.length);
    joined.set(chat.carry);
    joined.set(bytes, chat.carry.length);
    bytes = joined;
    chat.carry = null;
  }
  const count = bytes.length >> 1;
  if (bytes.length % 2) chat.carry = bytes.slice(bytes.length - 1);
  if (!count) return;
  const ctx = chatAudio();
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
  const buffer = ctx.createBuffer(1, count, media.sample_rate || 24000);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < count; i += 1) channel[i] = view.getInt16(i * 2, true) / 32768;
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  // After an underrun a little lead time, so that the next frames join without a gap.
  const at = Math.max(chat.nextAt, ctx.currentTime + 0.05);
  source.start(at);
  chat.nextAt = at + buffer.duration;
  if (chat.turnFirstAt === null) chat.turnFirstAt = at;
  chat.sources.add(source);
  source.onended = () => chat.sources.delete(source);
  const panel = $("chat");
  chatData({ audioBytes: String(Number(panel.dataset.audioBytes || 0) + count * 2) });
}

async function chatSend() {
  const text = $("chat-text").value.trim();
  if (!text) return;
  chatAudio();
  try {
    const ws = await openChat();
    beginUserTurn(text);
    ws.send(JSON.stringify({ type: "user_text", text }));
    $("chat-text").value = "";
  } catch (err) {
    showError(err.message || String(err));
  }
}

function micFormat() {
  for (const type of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

// Press to speak, press again to send: MediaRecorder's webm/opus goes out in 250 ms pieces as it is recorded.
async function chatMic() {
  const button = $("chat-mic");
  if (chat.recorder) { chat.recorder.stop(); return; }
  showError("");
  const format = micFormat();
  if (!navigator.mediaDevices || !format) {
    showError("this browser cannot record the microphone here (MediaRecorder, a secure origin)");
    return;
  }
  chatAudio();
  let stream;
  let ws;
  try {
    ws = await openChat();
    // Echo cancellation stays on (the answer plays through the speakers); noise suppression and automatic gain
    // are off: they distort a voice enough that a small recogniser (pocketsphinx) loses words.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    showError(`Microphone: ${err.message || err}`);
    return;
  }
  const recorder = new MediaRecorder(stream, { mimeType: format });
  chat.recorder = recorder;
  beginUserTurn("🎤 …");
  const started = performance.now();
  let sent = 0;
  ws.send(JSON.stringify({ type: "user_audio_start", format: recorder.mimeType || format }));
  recorder.ondataavailable = (event) => {
    if (!event.data.size || ws.readyState !== WebSocket.OPEN) return;
    ws.send(event.data);  // a Blob; the socket keeps the order of everything sent
    sent += event.data.size;
    chatData({ micBytes: String(sent), micMs: String(Math.round(performance.now() - started)) });
  };
  recorder.onstop = () => {
    stream.getTracks().forEach((track) => track.stop());
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "user_audio_end" }));
    chat.recorder = null;
    button.classList.remove("recording");
    button.textContent = "🎤 Speak · 说话";
    chatData({ recording: "false" });
  };
  recorder.start(250);
  button.classList.add("recording");
  button.textContent = "■ Send · 发送语音";
  chatData({ recording: "true", micBytes: "0", micMs: "0" });
}

$("chat-send").addEventListener("click", chatSend);
$("chat-text").addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); chatSend(); } });
$("chat-mic").addEventListener("click", chatMic);
// A new voice or emotion applies to the next answer; a new key needs a new connection.
["voice", "emotion", "avatar", "chat-video"].forEach((id) => $(id).addEventListener("change", () => {
  if (chat.ws && chat.ws.readyState === WebSocket.OPEN) chat.ws.send(JSON.stringify(chatConfig()));
}));

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
  closeChat();
  start();
});

(async () => {
  await waitUntilReady();
  await start();
})();
