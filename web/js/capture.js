/**
 * Microphone capture: getUserMedia with echo cancellation, noise suppression and
 * automatic gain asked of the browser, into the capture worklet, which hands
 * back PCM16 frames at the session's input rate plus a level for the meter.
 */

export class MicrophoneError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // "denied" | "missing" | "busy" | "unsupported" | "failed"
  }
}

/** Turn getUserMedia's exceptions into one plain sentence a person can act on. */
function explain(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new MicrophoneError("denied",
      "Microphone access was blocked. Allow the microphone for this site in the browser's " +
      "address bar, then press Start again — or type your question below.");
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return new MicrophoneError("missing", "No microphone was found. Plug one in, or type your question below.");
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return new MicrophoneError("busy",
      "The microphone is in use by another application or could not be opened.");
  }
  return new MicrophoneError("failed", `The microphone could not be started: ${err && err.message || err}`);
}

export class Capture {
  /**
   * @param {(pcm: ArrayBuffer) => void} onFrame   a PCM16 frame at `targetRate`
   * @param {(rms: number, peak: number) => void} onLevel
   */
  constructor({ targetRate = 24000, frameMs = 20, onFrame, onLevel }) {
    this.targetRate = targetRate;
    this.frameMs = frameMs;
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.ctx = null;
    this.stream = null;
    this.node = null;
    this.source = null;
  }

  get active() {
    return this.stream !== null;
  }

  async start() {
    if (this.active) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MicrophoneError("unsupported",
        "This browser cannot capture audio here (a secure origin — https or localhost — is needed).");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) {
      throw explain(err);
    }
    try {
      this.ctx = new AudioContext({ latencyHint: "interactive" });
      await this.ctx.audioWorklet.addModule(new URL("./worklets/capture-processor.js", import.meta.url));
      this.source = this.ctx.createMediaStreamSource(stream);
      this.node = new AudioWorkletNode(this.ctx, "capture-processor", {
        numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit",
        processorOptions: { targetRate: this.targetRate, frameMs: this.frameMs },
      });
      this.node.port.onmessage = (e) => {
        const m = e.data;
        if (m.type !== "frame") return;
        this.onLevel(m.rms, m.peak);
        this.onFrame(m.pcm);
      };
      this.source.connect(this.node);
      if (this.ctx.state !== "running") await this.ctx.resume();
    } catch (err) {
      stream.getTracks().forEach((t) => t.stop());
      await this.teardown();
      throw new MicrophoneError("failed", `Audio processing could not start: ${err.message}`);
    }
    this.stream = stream;
    // a mic unplugged mid-conversation ends the track: report it instead of going quiet
    stream.getAudioTracks().forEach((t) => {
      t.onended = () => this.onEnded && this.onEnded();
    });
  }

  async stop() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null;
    await this.teardown();
    this.onLevel(0, 0);
  }

  async teardown() {
    if (this.source) this.source.disconnect();
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
    }
    this.source = this.node = null;
    if (this.ctx) await this.ctx.close().catch(() => {});
    this.ctx = null;
  }
}
