/**
 * The conversation controller: turns Realtime server events into transcript,
 * playback and state changes, and user actions (mic, push-to-talk, typing,
 * interrupting) into client events. All protocol knowledge of the page lives
 * here; the views and audio classes know nothing about the wire format.
 */
import { base64ToBytes, bytesToBase64, samplesToMs } from "./pcm.js";
import { parseSources, parseTimings, renderLatencyPanel } from "./latency.js";
import { sessionUpdate } from "./settings.js";

const INPUT_RATE = 24000;
const MIN_PTT_MS = 200; // a shorter press is a slip, not an utterance
const CANCEL_WAIT_MS = 3000; // longest wait for a cancelled response's response.done

export class Controller {
  constructor({ client, capture, playback, transcript, stateView, meter, banner, latencyRoot, settings, hook }) {
    Object.assign(this, { client, capture, playback, transcript, stateView, meter, banner, latencyRoot, settings, hook });
    this.connection = "connecting";
    this.everConnected = false;
    this.lostNoticeShown = false;
    this.micOn = false;
    this.userSpeaking = false;
    this.pttHeld = false;
    this.pttSeq = 0;
    this.pttItem = null;
    this.awaitingResponse = false;
    this.responses = new Map();   // response id -> {items, status, done, timings, ...}
    this.itemResponse = new Map(); // assistant item id -> response id
    this.activeResponse = null;
    this.lastAudioItem = null;
    this.turnStartedAt = null;     // when the user's turn ended (client clock), for client latency
    this.truncated = new Map();    // item -> audio_end_ms last sent
    this.clearing = null;
    this.outputRate = playback.rate;

    client.addEventListener("status", (e) => this.onStatus(e.detail));
    client.addEventListener("server", (e) => this.onServer(e.detail));
    playback.addEventListener("start", (e) => this.onPlaybackStart(e.detail));
    playback.addEventListener("stop", () => this.render());
    playback.addEventListener("progress", () => this.syncHook());
    playback.addEventListener("error", (e) => this.error("Audio playback failed", e.detail.message));
    renderLatencyPanel(latencyRoot, null);
  }

  // ---- connection ---------------------------------------------------------

  onStatus({ state, delayMs, reason, attempt }) {
    this.connection = state;
    if (state === "open") {
      this.hook.connections += 1;
      this.banner.hide("connection");
      this.applySettings();
    } else if (state === "reconnecting") {
      this.abandonActiveResponse();
      const secs = Math.max(1, Math.round(delayMs / 1000));
      this.banner.show({
        kind: "warn", key: "connection",
        title: this.everConnected ? "Connection lost" : "Can't reach the assistant",
        message: `${reason ? cap(reason) + ". " : ""}Trying again in ${secs} s (attempt ${attempt}). ` +
          (this.everConnected ? "Your conversation will continue where it left off." : ""),
        action: "Retry now", onAction: () => this.client.retryNow(),
      });
      if (this.everConnected && !this.lostNoticeShown) {
        this.transcript.notice("Connection lost. Reconnecting…", "warn");
        this.lostNoticeShown = true;
      }
    }
    this.render();
  }

  applySettings() {
    this.client.send(sessionUpdate(this.settings, { inputRate: INPUT_RATE, outputRate: this.outputRate }));
    this.render();
  }

  /** A reply in flight when the connection dropped will not finish: say so. */
  abandonActiveResponse() {
    const r = this.activeResponse && this.responses.get(this.activeResponse);
    if (r && !r.done) {
      r.done = true;
      for (const item of r.items) {
        this.playback.end(item);
        this.transcript.status(item, "Cut off", "warn", "The connection dropped before this answer finished.");
      }
    }
    this.activeResponse = null;
    this.awaitingResponse = false;
    this.userSpeaking = false;
  }

  // ---- server events ------------------------------------------------------

  onServer(ev) {
    const h = this.hook;
    h.serverEvents[ev.type] = (h.serverEvents[ev.type] || 0) + 1;
    const fn = HANDLERS[ev.type];
    if (fn) fn.call(this, ev);
    this.render();
  }

  onSessionCreated(ev) {
    const id = ev.session && ev.session.id;
    const previous = this.client.sessionId;
    if (id) this.client.sessionId = id;
    this.hook.sessionId = id;
    const out = ev.session && ev.session.audio && ev.session.audio.output;
    if (out && out.voice) this.onVoiceKnown && this.onVoiceKnown(out.voice);
    if (out && out.format && out.format.rate && !this.playback.ctx) {
      this.outputRate = out.format.rate;
      this.playback.rate = out.format.rate;
    }
    if (this.everConnected) {
      if (previous && id && previous !== id) {
        this.transcript.notice("Reconnected, but the previous conversation could not be resumed: this is a new one.", "warn");
      } else {
        this.transcript.notice("Reconnected. The conversation continues.", "ok");
      }
      this.banner.show({ kind: "ok", key: "connection", message: "Reconnected to the same conversation.", autoHideMs: 4000 });
      this.hook.reconnects += 1;
    }
    this.everConnected = true;
    this.lostNoticeShown = false;
  }

  onSessionUpdated() {
    this.hook.sessionUpdates += 1;
  }

  onSpeechStarted(ev) {
    this.userSpeaking = true;
    this.transcript.userStarted(ev.item_id);
    const speaking = this.playback.playing || this.hasUnplayedAudio();
    if (speaking && this.settings.bargeIn) this.interrupt("speech_started");
  }

  onSpeechStopped() {
    this.userSpeaking = false;
    this.awaitingResponse = this.settings.mode !== "ptt";
    this.turnStartedAt = performance.now();
  }

  onCommitted(ev) {
    if (this.pttItem && ev.item_id) {
      this.transcript.rekey(this.pttItem, ev.item_id);
      this.pttItem = null;
    }
  }

  onTranscriptDelta(ev) {
    const e = this.transcript.get(ev.item_id);
    const soFar = typeof ev.transcript === "string" ? ev.transcript : ((e && e.interim) || "") + (ev.delta || "");
    if (e) e.interim = soFar;
    this.transcript.userInterim(ev.item_id, soFar);
  }

  onTranscriptCompleted(ev) {
    this.transcript.userFinal(ev.item_id, ev.transcript);
    this.hook.userTranscripts.push(ev.transcript || "");
  }

  onTranscriptFailed(ev) {
    const msg = (ev.error && ev.error.message) || "unknown error";
    this.transcript.userFailed(ev.item_id, msg);
  }

  response(id) {
    if (!this.responses.has(id)) {
      this.responses.set(id, { id, items: [], done: false, status: null, audio: false, startedAt: this.turnStartedAt });
    }
    return this.responses.get(id);
  }

  onResponseCreated(ev) {
    const r = this.response(ev.response.id);
    r.createdAt = performance.now();
    if (r.startedAt == null) r.startedAt = this.turnStartedAt ?? r.createdAt;
    this.activeResponse = r.id;
    this.awaitingResponse = false;
  }

  onOutputItem(ev) {
    const item = ev.item;
    if (!item || item.role !== "assistant") return;
    const r = this.response(ev.response_id);
    if (!r.items.includes(item.id)) r.items.push(item.id);
    this.itemResponse.set(item.id, r.id);
    this.transcript.assistant(item.id);
  }

  trackItem(ev) {
    if (!ev.item_id) return;
    const rid = ev.response_id || this.activeResponse;
    if (!rid) return;
    const r = this.response(rid);
    if (!r.items.includes(ev.item_id)) r.items.push(ev.item_id);
    this.itemResponse.set(ev.item_id, rid);
  }

  onTextDelta(ev) {
    this.trackItem(ev);
    const audioAt = this.playback.received[ev.item_id] || 0;
    this.transcript.assistantDelta(ev.item_id, ev.delta, audioAt);
    this.hook.assistantText = this.transcript.get(ev.item_id).value;
  }

  onAudioDelta(ev) {
    this.trackItem(ev);
    let pcm;
    try {
      pcm = base64ToBytes(ev.delta);
    } catch {
      this.error("Bad audio from the server", "An audio chunk could not be decoded; it was skipped.");
      return;
    }
    const r = this.responses.get(this.itemResponse.get(ev.item_id));
    if (r) r.audio = true;
    if (this.truncated.has(ev.item_id) && r && !r.done) {
      // audio again for a truncated item: a false interruption, the reply resumes
      this.truncated.delete(ev.item_id);
      this.transcript.resumed(ev.item_id);
      this.hook.resumes += 1;
    }
    this.transcript.assistant(ev.item_id);
    this.lastAudioItem = ev.item_id;
    this.hook.audioDeltas += 1;
    this.playback.push(ev.item_id, pcm);
  }

  onAudioDone(ev) {
    this.playback.end(ev.item_id);
  }

  onResponseDone(ev) {
    const resp = ev.response || {};
    const r = this.response(resp.id);
    r.done = true;
    r.status = resp.status;
    if (this.activeResponse === r.id) this.activeResponse = null;
    this.awaitingResponse = false;
    for (const out of resp.output || []) {
      if (out.role === "assistant" && out.id && !r.items.includes(out.id)) r.items.push(out.id);
    }
    for (const item of r.items) {
      this.playback.end(item);
      this.transcript.assistantDone(item);
    }
    const last = r.items[r.items.length - 1];
    const details = resp.status_details || {};
    if (resp.status === "cancelled") {
      for (const item of r.items) {
        if (!this.truncated.has(item)) {
          this.transcript.markUnheard(item, this.playback.played[item] || 0, this.playback.received[item] || 0);
        }
      }
      if (last && !this.truncated.has(last)) this.transcript.status(last, "Stopped", "warn");
      if (!last) this.transcript.notice("The answer was cancelled before it started.", "info");
    } else if (resp.status === "failed") {
      const msg = (details.error && details.error.message) || "The assistant could not answer.";
      if (last) this.transcript.status(last, "Failed", "error", msg);
      else this.transcript.notice(`The answer failed: ${msg}`, "error");
      this.error("The answer failed", msg);
    } else if (resp.status === "incomplete") {
      if (last) this.transcript.status(last, "Incomplete", "warn", details.reason ? `Stopped early: ${details.reason}.` : undefined);
    }
    if (r.onDone) r.onDone();
    const meta = resp.metadata || {};
    r.timings = parseTimings(meta);
    r.sources = parseSources(meta);
    if (last && r.sources.length) this.transcript.sources(last, r.sources);
    this.hook.responses.push({ id: r.id, status: r.status, timings: r.timings, sources: r.sources });
    this.maybeShowLatency(r);
  }

  onPlaybackStart({ item }) {
    const r = this.responses.get(this.itemResponse.get(item));
    if (r && r.firstPlayedAt == null) {
      r.firstPlayedAt = performance.now();
      this.maybeShowLatency(r);
    }
    this.render();
  }

  /** Render a turn's latency once both the timings and the first sound are known. */
  maybeShowLatency(r) {
    if (r.latencyShown || !r.done || !r.timings || r.status === "failed") return; // no answer, no latency
    if (r.audio && r.firstPlayedAt == null && r.status === "completed") return;
    r.latencyShown = true;
    const clientMs = r.firstPlayedAt != null && r.startedAt != null ? r.firstPlayedAt - r.startedAt : undefined;
    const last = r.items[r.items.length - 1];
    if (last) this.transcript.latency(last, r.timings, clientMs);
    renderLatencyPanel(this.latencyRoot, r.timings, clientMs);
    this.hook.lastTimings = r.timings;
  }

  onTruncated(ev) {
    const heard = Math.round((ev.audio_end_ms * this.playback.rate) / 1000);
    const res = this.transcript.markUnheard(ev.item_id, heard, this.playback.received[ev.item_id] || 0);
    this.hook.truncatedConfirmed.push({ item_id: ev.item_id, audio_end_ms: ev.audio_end_ms, ...(res || {}) });
  }

  onOutputCleared() {
    this.interrupt("output_audio_buffer.cleared");
  }

  onError(ev) {
    const err = ev.error || {};
    const message = err.message || "The server reported an error without a message.";
    this.hook.errors.push({ type: err.type, code: err.code, message });
    const title = err.code === "backend_unavailable" || /unavailable|down|unreachable/i.test(message)
      ? "A speech service is unavailable" : "The assistant reported an error";
    this.error(title, message);
  }

  error(title, message) {
    this.banner.show({ kind: "error", key: "server-error", title, message });
  }

  // ---- barge-in -----------------------------------------------------------

  hasUnplayedAudio() {
    const item = this.lastAudioItem;
    return Boolean(item) && (this.playback.received[item] || 0) > (this.playback.played[item] || 0);
  }

  /**
   * Stop playback now and tell the server how much of the answer was heard.
   * Serialized: speech_started and output_audio_buffer.cleared usually arrive
   * together, and must produce one truncate, not two.
   */
  interrupt(reason) {
    if (this.clearing) return this.clearing;
    this.clearing = this.doInterrupt(reason).finally(() => {
      this.clearing = null;
      this.render();
    });
    return this.clearing;
  }

  async doInterrupt(reason) {
    const candidate = this.playback.currentItem || this.lastAudioItem;
    const unplayedBefore = this.hasUnplayedAudio();
    const res = await this.playback.clear();
    const item = res.item || candidate;
    this.hook.clears.push({ reason, item, playedMs: res.playedMs, wasPlaying: res.wasPlaying, dropped: res.dropped });
    if (!item) return;
    const r = this.responses.get(this.itemResponse.get(item));
    const streaming = r && !r.done;
    if (!unplayedBefore && !res.dropped && !streaming) return; // everything was heard
    const playedMs = samplesToMs(this.playback.played[item] || 0, this.playback.rate);
    if (this.truncated.get(item) === playedMs) return; // already told the server exactly this
    this.truncated.set(item, playedMs);
    this.client.send({ type: "conversation.item.truncate", item_id: item, content_index: 0, audio_end_ms: playedMs });
    this.hook.truncates.push({ item_id: item, audio_end_ms: playedMs, reason, at: Date.now() });
  }

  /**
   * The user asked to stop the answer (Esc, the Stop button, typing, push-to-talk).
   * Resolves once the server has closed the response (bounded), so a following
   * response.create is not refused as "already has an active response".
   */
  async stopAnswer() {
    const active = this.activeResponse && this.responses.get(this.activeResponse);
    let closed = Promise.resolve();
    if (active && !active.done) {
      closed = new Promise((resolve) => {
        active.onDone = resolve;
        setTimeout(resolve, CANCEL_WAIT_MS);
      });
      this.client.send({ type: "response.cancel", response_id: active.id });
    }
    await this.interrupt("user");
    await closed;
  }

  // ---- user actions -------------------------------------------------------

  sendFrame(pcm) {
    if (this.connection !== "open") return;
    if (this.settings.mode === "ptt" && !this.pttHeld) return;
    if (this.client.send({ type: "input_audio_buffer.append", audio: bytesToBase64(pcm) })) {
      this.hook.framesSent += 1;
      this.hook.frameBytes = pcm.byteLength;
    }
  }

  async sendText(text) {
    const t = text.trim();
    if (!t) return false;
    if (this.connection !== "open") {
      this.error("Not connected", "The message was not sent: the assistant is not connected. It will reconnect by itself; try again in a moment.");
      return false;
    }
    await this.playback.init().catch(() => {});
    if (this.playback.playing || this.activeResponse) await this.stopAnswer();
    this.client.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: t }] },
    });
    this.client.send({ type: "response.create" });
    this.transcript.userTyped(t);
    this.turnStartedAt = performance.now();
    this.awaitingResponse = true;
    this.hook.textsSent += 1;
    this.render();
    return true;
  }

  async pttDown() {
    if (this.pttHeld || this.connection !== "open") return;
    this.pttHeld = true;
    this.pttDownAt = performance.now();
    if (this.playback.playing || this.activeResponse) await this.stopAnswer();
    this.client.send({ type: "input_audio_buffer.clear" });
    this.pttItem = `ptt_${++this.pttSeq}`;
    this.transcript.userStarted(this.pttItem);
    this.render();
  }

  pttUp() {
    if (!this.pttHeld) return;
    this.pttHeld = false;
    const held = performance.now() - this.pttDownAt;
    if (held < MIN_PTT_MS) {
      this.client.send({ type: "input_audio_buffer.clear" });
      this.transcript.drop(this.pttItem);
      this.pttItem = null;
      this.banner.show({ kind: "warn", key: "ptt", message: "Hold the talk button while you speak, then let go.", autoHideMs: 3000 });
    } else {
      this.client.send({ type: "input_audio_buffer.commit" });
      this.client.send({ type: "response.create" });
      this.turnStartedAt = performance.now();
      this.awaitingResponse = true;
    }
    this.render();
  }

  // ---- state --------------------------------------------------------------

  state() {
    if (this.connection === "reconnecting") return "reconnecting";
    if (this.connection !== "open") return this.connection === "closed" ? "offline" : "connecting";
    const r = this.activeResponse && this.responses.get(this.activeResponse);
    if (this.playback.playing || (r && r.firstPlayedAt != null && !r.done)) return "speaking";
    if (this.userSpeaking || this.pttHeld) return "user-speaking";
    if (this.awaitingResponse || r) return "thinking";
    if (this.micOn) return "listening";
    return "ready";
  }

  render() {
    const s = this.state();
    let variant = s;
    if (s === "listening" && this.settings.mode === "ptt") variant = "listening-ptt";
    if (s === "speaking" && (!this.settings.bargeIn || this.settings.mode === "ptt")) variant = "speaking-nobarge";
    this.stateView.set(s, variant);
    this.onRender && this.onRender(s);
    this.syncHook();
  }

  syncHook() {
    const h = this.hook;
    h.state = this.state();
    h.connection = this.connection;
    h.micOn = this.micOn;
    h.playback = { ...this.playback.stats, playing: this.playback.playing, route: this.playback.route };
  }
}

function cap(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

const HANDLERS = {
  "session.created": Controller.prototype.onSessionCreated,
  "session.updated": Controller.prototype.onSessionUpdated,
  "input_audio_buffer.speech_started": Controller.prototype.onSpeechStarted,
  "input_audio_buffer.speech_stopped": Controller.prototype.onSpeechStopped,
  "input_audio_buffer.committed": Controller.prototype.onCommitted,
  "conversation.item.input_audio_transcription.delta": Controller.prototype.onTranscriptDelta,
  "conversation.item.input_audio_transcription.completed": Controller.prototype.onTranscriptCompleted,
  "conversation.item.input_audio_transcription.failed": Controller.prototype.onTranscriptFailed,
  "response.created": Controller.prototype.onResponseCreated,
  "response.output_item.added": Controller.prototype.onOutputItem,
  "response.output_audio_transcript.delta": Controller.prototype.onTextDelta,
  "response.output_text.delta": Controller.prototype.onTextDelta,
  "response.output_audio.delta": Controller.prototype.onAudioDelta,
  "response.output_audio.done": Controller.prototype.onAudioDone,
  "response.done": Controller.prototype.onResponseDone,
  "output_audio_buffer.cleared": Controller.prototype.onOutputCleared,
  "conversation.item.truncated": Controller.prototype.onTruncated,
  error: Controller.prototype.onError,
};
