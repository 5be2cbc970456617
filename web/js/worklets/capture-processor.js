/**
 * Microphone capture worklet: runs on the audio rendering thread, resamples the
 * context's rate (usually 48 kHz) to the session's input rate (24 kHz), converts
 * to PCM16 and posts fixed-size frames (20–40 ms) to the page, together with the
 * frame's level for the meter. Resampling here, not on the main thread, keeps a
 * busy page (transcript rendering, GC) from ever stretching or dropping audio.
 */

/** Windowed-sinc low-pass taps (Blackman window), cutoff as a fraction of the input rate. */
function lowpassTaps(count, cutoff) {
  const taps = new Float32Array(count);
  const mid = (count - 1) / 2;
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (count - 1))
      + 0.08 * Math.cos((4 * Math.PI * i) / (count - 1));
    taps[i] = sinc * w;
    sum += taps[i];
  }
  for (let i = 0; i < count; i++) taps[i] /= sum; // unity gain at DC
  return taps;
}

/**
 * Streaming resampler: an anti-aliasing FIR (only when downsampling) followed by
 * linear interpolation whose fractional position carries across 128-sample
 * render blocks, so frame borders never click.
 */
class StreamResampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate;
    this.pos = 0;        // read position, relative to `prev` (virtual index 0)
    this.prev = 0;       // last filtered sample of the previous block
    this.taps = this.step > 1 ? lowpassTaps(33, 0.45 / this.step) : null;
    this.hist = this.taps ? new Float32Array(this.taps.length - 1) : null;
  }

  filter(input) {
    if (!this.taps) return input;
    const n = input.length, t = this.taps, h = this.hist, k = t.length;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) {
        const idx = i - j;
        acc += t[j] * (idx >= 0 ? input[idx] : h[h.length + idx]);
      }
      out[i] = acc;
    }
    // keep the last k-1 input samples as history for the next block
    if (n >= h.length) h.set(input.subarray(n - h.length));
    else { h.copyWithin(0, n); h.set(input, h.length - n); }
    return out;
  }

  /** Returns the output samples this block produces (a varying count). */
  process(input) {
    const x = this.filter(input);
    const n = x.length;
    const out = [];
    let t = this.pos;
    while (t < n) {
      const i = Math.floor(t), frac = t - i;
      const a = i === 0 ? this.prev : x[i - 1];
      const b = x[i];
      out.push(a + (b - a) * frac);
      t += this.step;
    }
    this.pos = t - n;
    this.prev = x[n - 1];
    return out;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.outRate = o.targetRate || 24000;
    const frameMs = Math.min(40, Math.max(20, o.frameMs || 20));
    this.frameSamples = Math.round((this.outRate * frameMs) / 1000);
    this.resampler = new StreamResampler(sampleRate, this.outRate);
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.sumSquares = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input connected yet: keep the node alive
    const samples = this.resampler.process(channel);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      this.sumSquares += s * s;
      const a = Math.abs(s);
      if (a > this.peak) this.peak = a;
      this.frame[this.fill++] = s < 0 ? s * 32768 : s * 32767;
      if (this.fill === this.frameSamples) this.flush();
    }
    return true;
  }

  flush() {
    const pcm = this.frame.buffer;
    const rms = Math.sqrt(this.sumSquares / this.frameSamples);
    // transfer the buffer (no copy) and start a fresh one
    this.port.postMessage({ type: "frame", pcm, rms, peak: this.peak }, [pcm]);
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.sumSquares = 0;
    this.peak = 0;
  }
}

registerProcessor("capture-processor", CaptureProcessor);
