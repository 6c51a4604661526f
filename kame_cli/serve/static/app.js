// kame's web page: microphone -> Opus (WebCodecs) -> Ogg -> moshi's protocol on /api/chat, and back;
// the session's events (kind 4, asked for with ?kame=1) drawn as the terminal panel draws them.
import { OggReader, OggWriter } from "./ogg.js";

const RATE = 24000; // the front-end's rate, both ways
const FRAME_MS = 20; // Opus packet length sent: small, so the server never waits long for a frame
const KIND = { HANDSHAKE: 0, AUDIO: 1, TEXT: 2, CONTROL: 3, METADATA: 4, ERROR: 5, PING: 6 };
const STEP_BUDGET_MS = 80;

const $ = (id) => document.getElementById(id);
const stats = {
  audioFramesSent: 0,
  audioPacketsReceived: 0,
  audioSamplesDecoded: 0,
  audioSamplesPlayed: 0,
  audioFramesPlayed: 0, // 80 ms frames of the voice the speaker took
  underruns: 0,
  jitterBufferMs: 0,
  finals: [],
  oracleText: "",
  oracleDone: 0,
  voiceText: "",
  state: "idle",
  errors: [],
};
window.kameStats = stats;

let session = null;

function say(text, bad = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("bad", bad);
}

function setRunning(running) {
  const button = $("start");
  button.textContent = running ? "Stop" : "Start";
  button.setAttribute("aria-pressed", String(running));
}

$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  if (session) session.stop("Stopped.");
  else start();
});

// Leaving the page ends its session at once, so that the server frees the front-end for the next.
window.addEventListener("pagehide", () => session?.stop("Stopped."));

async function start() {
  if (typeof AudioEncoder === "undefined" || typeof AudioDecoder === "undefined") {
    say("This browser has no WebCodecs audio (AudioEncoder/AudioDecoder): use a recent Chromium, Safari or Firefox.", true);
    return;
  }
  if (!window.isSecureContext) {
    say("The microphone needs https (or localhost): start kame serve with TLS.", true);
    return;
  }
  session = new Session($("token").value.trim());
  setRunning(true);
  try {
    await session.open();
  } catch (err) {
    session?.stop(err.message, true);
  }
}

class Session {
  constructor(token) {
    this.token = token;
    this.ws = null;
    this.stopped = false;
    this.started = false;
    this.serverError = null;
  }

  async open() {
    say("Asking for the microphone…");
    stats.state = "microphone";
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      throw new Error(
        err.name === "NotAllowedError"
          ? "Microphone denied: allow the microphone for this page (the address bar's site settings), then press Start."
          : `No microphone (${err.name}): connect one, then press Start.`,
      );
    }
    this.context = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    await this.context.audioWorklet.addModule("static/worklets.js");
    this.player = new AudioWorkletNode(this.context, "kame-playback", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { targetMs: 120, maxMs: 1000 },
    });
    this.player.port.onmessage = (e) => this.onPlayback(e.data);
    this.player.connect(this.context.destination);
    this.setupCodecs();
    if (this.stopped) return;
    this.connect();
  }

  setupCodecs() {
    this.writer = null;
    this.encoder = new AudioEncoder({
      output: (chunk, meta) => this.onEncoded(chunk, meta),
      error: (err) => this.stop(`The Opus encoder failed: ${err.message}`, true),
    });
    this.encoder.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1, bitrate: 32000, opus: { frameDuration: FRAME_MS * 1000 } });
    this.reader = new OggReader();
    this.decoder = new AudioDecoder({
      output: (data) => this.onDecoded(data),
      error: (err) => this.stop(`The Opus decoder failed: ${err.message}`, true),
    });
    this.decoder.configure({ codec: "opus", sampleRate: RATE, numberOfChannels: 1 });
    this.decodedTime = 0;
    this.pending = new Float32Array(0);
    this.captureTime = 0;
  }

  connect() {
    say("Connecting…");
    stats.state = "connecting";
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ kame: "1" });
    if (this.token) query.set("token", this.token); // a browser's WebSocket cannot send a header
    const ws = new WebSocket(`${scheme}//${location.host}/api/chat?${query}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.opened = true;
      if (!this.started) say("Connected; waiting for the session…");
    };
    ws.onmessage = (e) => this.onMessage(new Uint8Array(e.data));
    ws.onclose = (e) => this.onClose(e);
  }

  async onClose(event) {
    if (this.stopped) return;
    if (!this.opened) {
      // The upgrade was refused: the browser hides the status, so ask the same URL over plain HTTP.
      this.stop(await refusalReason(this.token), true);
      return;
    }
    const why = this.serverError || event.reason || "the server closed the session";
    this.stop(`Connection lost: ${why}. Press Start to talk again.`, true);
  }

  onMessage(bytes) {
    if (bytes.length === 0) return;
    const payload = bytes.subarray(1);
    switch (bytes[0]) {
      case KIND.HANDSHAKE:
        this.begin();
        break;
      case KIND.AUDIO:
        for (const packet of this.reader.push(payload)) {
          stats.audioPacketsReceived++;
          this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: this.decodedTime, data: packet }));
          this.decodedTime += 20000;
        }
        break;
      case KIND.TEXT:
        stats.voiceText += new TextDecoder().decode(payload);
        $("voice").textContent = stats.voiceText;
        break;
      case KIND.METADATA:
        onInfo(JSON.parse(new TextDecoder().decode(payload)));
        break;
      case KIND.ERROR:
        this.serverError = new TextDecoder().decode(payload);
        break;
      default:
        break; // control and ping: nothing to do in full streaming
    }
  }

  begin() {
    this.started = true;
    stats.state = "talking";
    say("Talking: speak now.");
    const source = this.context.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.context, "kame-capture", { numberOfOutputs: 0 });
    this.capture.port.onmessage = (e) => this.onCaptured(e.data);
    source.connect(this.capture);
    this.source = source;
  }

  onCaptured(samples) {
    if (this.encoder.state !== "configured") return;
    const data = new AudioData({
      format: "f32",
      sampleRate: RATE,
      numberOfFrames: samples.length,
      numberOfChannels: 1,
      timestamp: Math.round((this.captureTime * 1e6) / RATE),
      data: samples,
    });
    this.captureTime += samples.length;
    this.encoder.encode(data);
    data.close();
  }

  onEncoded(chunk, meta) {
    if (!this.writer) {
      // WebCodecs gives its OpusHead as the decoder's description: take its pre-skip when it has one.
      let preSkip = 312;
      const description = meta?.decoderConfig?.description;
      if (description && description.byteLength >= 12) {
        preSkip = new DataView(description instanceof ArrayBuffer ? description : description.buffer).getUint16(10, true);
      }
      this.writer = new OggWriter(RATE, preSkip);
    }
    const packet = new Uint8Array(chunk.byteLength);
    chunk.copyTo(packet);
    const samples48k = Math.round(((chunk.duration || FRAME_MS * 1000) * 48000) / 1e6);
    const pages = this.writer.packet(packet, samples48k);
    if (this.ws?.readyState === WebSocket.OPEN) {
      const message = new Uint8Array(pages.length + 1);
      message[0] = KIND.AUDIO;
      message.set(pages, 1);
      this.ws.send(message);
      stats.audioFramesSent++;
    }
  }

  onDecoded(data) {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    const rate = data.sampleRate;
    data.close();
    const out = rate === RATE ? samples : resample(samples, rate, RATE);
    stats.audioSamplesDecoded += out.length;
    this.player.port.postMessage(out, [out.buffer]);
  }

  onPlayback({ buffered, played, underruns }) {
    stats.audioSamplesPlayed = played;
    stats.audioFramesPlayed = Math.floor(played / 1920);
    stats.underruns = underruns;
    stats.jitterBufferMs = Math.round((buffered * 1000) / RATE);
    $("jitter").textContent = `${stats.jitterBufferMs} ms (${underruns} underruns)`;
    $("played").textContent = `${(played / RATE).toFixed(1)} s`;
  }

  stop(message, bad = false) {
    if (this.stopped) return;
    this.stopped = true;
    stats.state = bad ? "refused" : "stopped";
    if (bad) stats.errors.push(message);
    say(message, bad);
    setRunning(false);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "the user stopped");
    this.source?.disconnect();
    this.stream?.getTracks().forEach((t) => t.stop());
    for (const codec of [this.encoder, this.decoder]) if (codec && codec.state !== "closed") codec.close();
    this.context?.close().catch(() => {}); // already closed: nothing left to free
    if (session === this) session = null;
  }
}

async function refusalReason(token) {
  const query = new URLSearchParams({ kame: "1" });
  if (token) query.set("token", token);
  let status = 0;
  try {
    status = (await fetch(`api/chat?${query}`, { cache: "no-store" })).status;
  } catch {
    return "Connection lost: the server cannot be reached. Press Start to try again.";
  }
  if (status === 401) return token ? "Wrong access token: enter the token the server was started with." : "The server needs an access token: enter it above.";
  if (status === 403) return "This page's address may not use the server (kame serve --allow-origin).";
  if (status === 503) return "Server busy: every place is taken. Try again in a minute.";
  return "Connection lost before the session began. Press Start to try again.";
}

function resample(samples, from, to) {
  const n = Math.floor((samples.length * to) / from);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = (i * from) / to;
    const j = Math.floor(x);
    const f = x - j;
    out[i] = samples[j] * (1 - f) + (samples[Math.min(j + 1, samples.length - 1)] ?? 0) * f;
  }
  return out;
}

// --- the panel: one handler per event type, as the terminal panel reads the log records -----------

const oracleLines = new Map(); // generation -> its <li>
let misses = 0;
let oracleRequests = 0;
let oracleRestarts = 0;
let pieces = []; // the front-end's text piece of each token id (TokenPieces, once per session)
let startId = -1;
let fed = ""; // the oracle's answer as far as the voice has taken it in

function onInfo(info) {
  switch (info.type) {
    case "Queue":
      say(`Waiting for a free slot: place ${info.place} in the queue.`);
      stats.state = "queued";
      break;
    case "PartialTranscript":
      $("committed").textContent = info.committed;
      $("tentative").textContent = info.tentative;
      break;
    case "FinalTranscript": {
      stats.finals.push(info.text);
      const li = document.createElement("li");
      li.textContent = info.text;
      $("finals").append(li);
      li.scrollIntoView({ block: "nearest" });
      $("committed").textContent = "";
      $("tentative").textContent = "";
      break;
    }
    case "TokenPieces":
      pieces = info.pieces;
      startId = info.start_id;
      break;
    case "OracleRequestStarted": {
      oracleRequests++;
      for (const old of oracleLines.values()) {
        if (old.dataset.done) continue;
        old.classList.add("restarted");
        if (!old.querySelector(".answer").textContent) old.querySelector(".answer").textContent = "(restarted before it answered)";
        oracleRestarts++;
        old.dataset.done = "restarted";
      }
      const li = document.createElement("li");
      const asked = document.createElement("span");
      asked.className = "label";
      asked.textContent = `“${info.user_text}” → `;
      const answer = document.createElement("span");
      answer.className = "answer";
      li.append(asked, answer);
      oracleLines.set(info.generation, li);
      $("oracle").append(li);
      li.scrollIntoView({ block: "nearest" });
      $("oracle-state").textContent = `asking (${info.reason}); ${oracleRequests} asked, ${oracleRestarts} restarted`;
      break;
    }
    case "OracleChunk": {
      // Chunks are words, as the terminal panel joins them.
      const answer = oracleLines.get(info.generation)?.querySelector(".answer");
      if (answer) answer.textContent = `${answer.textContent} ${info.text}`.trim();
      stats.oracleText = `${stats.oracleText} ${info.text}`.trim();
      $("oracle-state").textContent = `streaming; ${oracleRequests} asked, ${oracleRestarts} restarted`;
      break;
    }
    case "OracleFinished": {
      const li = oracleLines.get(info.generation);
      if (li && !li.dataset.done) {
        li.dataset.done = info.outcome;
        if (info.outcome !== "completed") li.classList.add("restarted");
      }
      if (info.outcome === "completed") stats.oracleDone++;
      $("oracle-state").textContent = `${info.outcome}; ${oracleRequests} asked, ${oracleRestarts} restarted`;
      break;
    }
    case "OracleFed":
      // The start token opens a new oracle stream (a restart): the voice begins a new answer.
      if (info.token_id === startId) fed = "";
      else if (info.token_id >= 0 && info.token_id < pieces.length) fed += pieces[info.token_id];
      $("fed").textContent = fed;
      break;
    case "BackendStatus":
      showBackend(info);
      break;
    case "StepTiming":
      $("step-meter").value = Math.min(info.total_ms, 160);
      $("step").textContent = `${info.total_ms.toFixed(1)} ms of ${STEP_BUDGET_MS}`;
      $("lag").textContent = `${Math.round(info.lag_ms)} ms`;
      break;
    case "DeadlineMiss":
      $("misses").textContent = String(++misses);
      break;
    default:
      break; // the clock, token pieces, output marks and the rest: the log's, not the panel's
  }
}

function showBackend({ component, state, message }) {
  let li = document.querySelector(`#backends li[data-component="${CSS.escape(component)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.component = component;
    $("backends").append(li);
  }
  li.textContent = `${component}: ${state}${message ? ` (${message})` : ""}`;
  li.classList.toggle("backend-error", state === "error");
}
