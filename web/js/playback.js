/**
 * Speaker side: an AudioContext at the session's output rate feeding the
 * playback worklet (jitter buffer). Keeps, per assistant item, how many samples
 * arrived and how many were actually rendered, which is what a barge-in
 * truncate needs (`audio_end_ms` = what the user heard).
 *
 * The output goes through a local WebRTC loop into an <audio> element
 * (loopback.js), so the browser's echo canceller removes it from the
 * microphone; `route` says which way it went ("loopback" or "direct").
 */
import { playThroughLoopback } from "./loopback.js";
import { samplesToMs } from "./pcm.js";

export class Playback extends EventTarget {
  constructor({ rate = 24000, prebufferMs = 80, loopback = true } = {}) {
    super();
    this.loopback = loopback;
    this.route = null;    // "loopback" (echo-cancellable) or "direct" (ctx.destination)
    this.rate = rate;
    this.prebufferMs = prebufferMs;
    this.ctx = null;
    this.node = null;
    this.ready = null;
    this.playing = false;
    this.currentItem = null;
    this.received = {};   // item -> samples pushed
    this.played = {};     // item -> samples rendered (from the worklet's reports)
    this.stats = { framesReceived: 0, samplesReceived: 0, samplesPlayed: 0, underruns: 0, clears: 0 };
    this.pending = [];    // chunks pushed before the worklet was ready
  }

  /** Create (or resume) the context; call from a user gesture so autoplay rules allow it. */
  async init() {
    if (!this.ready) this.ready = this.create();
    await this.ready;
    if (this.ctx.state !== "running") await this.ctx.resume().catch(() => {});
  }

  async create() {
    this.ctx = new AudioContext({ sampleRate: this.rate, latencyHint: "interactive" });
    await this.ctx.audioWorklet.addModule(new URL("./worklets/playback-processor.js", import.meta.url));
    this.node = new AudioWorkletNode(this.ctx, "playback-processor", {
      numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { prebufferMs: this.prebufferMs },
    });
    this.node.port.onmessage = (e) => this.onWorklet(e.data);
    // Queued audio goes first: pushes made while the output connects go straight to the node.
    for (const [msg, transfer] of this.pending) this.node.port.postMessage(msg, transfer);
    this.pending = [];
    await this.connectOutput();
  }

  async connectOutput() {
    if (this.loopback && typeof this.ctx.createMediaStreamDestination === "function") {
      const dest = this.ctx.createMediaStreamDestination();
      this.node.connect(dest);
      try {
        this.loop = await playThroughLoopback(dest.stream);
        this.route = "loopback";
        return;
      } catch (err) {
        this.node.disconnect();
        console.warn(`playback: no WebRTC loopback (${err.message}); playing directly, without the browser's echo cancellation`);
      }
    }
    this.node.connect(this.ctx.destination);
    this.route = "direct";
  }

  post(msg, transfer = []) {
    if (this.node) this.node.port.postMessage(msg, transfer);
    else this.pending.push([msg, transfer]);
  }

  /** Queue PCM16 for an assistant item. */
  push(item, pcm) {
    this.received[item] = (this.received[item] || 0) + pcm.byteLength / 2;
    this.post({ type: "push", item, pcm }, [pcm]);
    if (!this.ready) this.init().catch((err) => this.emit("error", { message: err.message }));
  }

  /** The item's audio is complete: play the tail without waiting for prebuffer. */
  end(item) {
    this.post({ type: "end", item });
  }

  /**
   * Stop now and drop the queue. Resolves with {item, playedMs, wasPlaying}
   * from the worklet's own count at the moment it stopped.
   */
  clear() {
    if (!this.node) {
      this.pending = [];
      return Promise.resolve({ item: null, playedMs: 0, wasPlaying: false, dropped: 0 });
    }
    return new Promise((resolve) => {
      this.onCleared = resolve;
      this.post({ type: "clear" });
    });
  }

  playedMs(item) {
    return samplesToMs(this.played[item] || 0, this.rate);
  }

  receivedMs(item) {
    return samplesToMs(this.received[item] || 0, this.rate);
  }

  onWorklet(m) {
    if (m.stats) this.stats = m.stats;
    if (m.item && typeof m.played === "number") this.played[m.item] = m.played;
    switch (m.type) {
      case "started":
        this.currentItem = m.item;
        this.setPlaying(true);
        break;
      case "drained":
      case "underrun":
        this.setPlaying(false, m.type);
        break;
      case "progress":
        if (m.item) this.currentItem = m.item;
        this.emit("progress", m);
        break;
      case "cleared": {
        Object.assign(this.played, m.playedByItem || {});
        this.setPlaying(false, "cleared");
        const done = this.onCleared;
        this.onCleared = null;
        if (done) done({ item: m.item, playedMs: samplesToMs(m.played, this.rate), wasPlaying: m.wasPlaying, dropped: m.dropped });
        break;
      }
      default:
        break;
    }
  }

  setPlaying(on, why = "") {
    if (this.playing === on) return;
    this.playing = on;
    this.emit(on ? "start" : "stop", { item: this.currentItem, why });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
