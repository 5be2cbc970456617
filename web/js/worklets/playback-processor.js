/**
 * Playback worklet: a small jitter buffer in front of the speaker.
 *
 * The page pushes PCM16 chunks tagged with the assistant item they belong to.
 * Playback starts once `prebufferMs` is queued (or the item has ended, for very
 * short replies), then runs gap-free; an empty queue mid-reply is an underrun:
 * output silence and buffer again. The worklet counts the samples it actually
 * rendered per item and reports them, because `conversation.item.truncate`
 * must say how much of the reply the user really heard, not how much arrived.
 *
 * `clear` drops everything queued; the very next render quantum (128 samples,
 * 5.3 ms at 24 kHz) fades the current sample to zero and is silent after that.
 */

const REPORT_EVERY_BLOCKS = 8; // ~43 ms at 24 kHz: smooth enough for the UI
const FADE_SAMPLES = 48;       // ~2 ms ramp so a hard stop does not click

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    const o = (options && options.processorOptions) || {};
    super();
    this.prebuffer = Math.round((sampleRate * (o.prebufferMs || 80)) / 1000);
    this.queue = [];           // [{item, data: Float32Array, offset}]
    this.buffered = 0;         // samples queued, not yet rendered
    this.playing = false;
    this.ended = new Set();    // items whose audio is complete: no need to prebuffer
    this.played = {};          // item id -> samples rendered
    this.current = null;       // item id being rendered
    this.fadeFrom = null;      // last output sample when a clear arrived
    this.stats = { framesReceived: 0, samplesReceived: 0, samplesPlayed: 0, underruns: 0, clears: 0 };
    this.blocks = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "push") {
      const pcm = new Int16Array(msg.pcm);
      const data = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
      this.queue.push({ item: msg.item, data, offset: 0 });
      this.buffered += data.length;
      this.stats.framesReceived += 1;
      this.stats.samplesReceived += data.length;
      // a resumed item (false interruption) is no longer "ended"
      this.ended.delete(msg.item);
    } else if (msg.type === "end") {
      this.ended.add(msg.item);
    } else if (msg.type === "clear") {
      const item = this.current;
      const wasPlaying = this.playing && this.buffered > 0;
      const dropped = this.buffered;
      this.queue = [];
      this.buffered = 0;
      this.playing = false;
      this.stats.clears += 1;
      if (wasPlaying) this.fadeFrom = this.lastSample || 0;
      this.port.postMessage({
        type: "cleared", item, played: item ? this.played[item] || 0 : 0, dropped,
        wasPlaying, playedByItem: { ...this.played }, stats: { ...this.stats },
      });
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    let i = 0;
    if (this.fadeFrom !== null) {
      const start = this.fadeFrom;
      const len = Math.min(FADE_SAMPLES, n);
      for (; i < len; i++) out[i] = start * (1 - (i + 1) / len);
      this.fadeFrom = null;
    }
    if (!this.playing && this.queue.length) {
      const head = this.queue[0].item;
      if (this.buffered >= this.prebuffer || this.ended.has(head)) {
        this.playing = true;
        this.port.postMessage({ type: "started", item: head });
      }
    }
    if (this.playing) {
      while (i < n && this.queue.length) {
        const chunk = this.queue[0];
        if (this.current !== chunk.item) {
          this.current = chunk.item;
          if (!(chunk.item in this.played)) this.played[chunk.item] = 0;
        }
        const take = Math.min(n - i, chunk.data.length - chunk.offset);
        out.set(chunk.data.subarray(chunk.offset, chunk.offset + take), i);
        i += take;
        chunk.offset += take;
        this.buffered -= take;
        this.played[chunk.item] += take;
        this.stats.samplesPlayed += take;
        if (chunk.offset >= chunk.data.length) this.queue.shift();
      }
      if (i > 0) this.lastSample = out[i - 1];
      if (!this.queue.length) {
        this.playing = false;
        const done = this.current !== null && this.ended.has(this.current);
        if (!done) this.stats.underruns += 1;
        this.port.postMessage({
          type: done ? "drained" : "underrun", item: this.current,
          played: this.current ? this.played[this.current] : 0, stats: { ...this.stats },
        });
      }
    }
    for (; i < n; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    // report while audio moves, stay quiet when idle
    const moving = this.playing || this.buffered > 0 || this.reportedPlayed !== this.stats.samplesPlayed;
    if (++this.blocks % REPORT_EVERY_BLOCKS === 0 && moving) {
      this.reportedPlayed = this.stats.samplesPlayed;
      this.port.postMessage({
        type: "progress", item: this.current, playing: this.playing,
        played: this.current ? this.played[this.current] : 0,
        buffered: this.buffered, stats: { ...this.stats },
      });
    }
    return true;
  }
}

registerProcessor("playback-processor", PlaybackProcessor);
