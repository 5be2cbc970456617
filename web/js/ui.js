/**
 * Small view pieces: the state indicator, the microphone level meter and the
 * error banner. They only render; the controller decides what to show.
 */

export const STATE_TEXT = {
  connecting: ["Connecting…", "Opening the connection to the assistant."],
  reconnecting: ["Reconnecting…", "The connection dropped; your conversation will continue."],
  offline: ["Offline", "The assistant cannot be reached."],
  ready: ["Ready", "Press Start talking, or type a message."],
  listening: ["Listening", "Go ahead, speak naturally."],
  "listening-ptt": ["Ready", "Hold the talk button (or Space) while you speak."],
  "user-speaking": ["Hearing you", "Pause when you're done."],
  thinking: ["Thinking", "Working on an answer…"],
  speaking: ["Speaking", "Speak or press Esc to interrupt."],
  "speaking-nobarge": ["Speaking", "Press Esc to interrupt."],
};

export class StateView {
  constructor({ root, orb, label, hint }) {
    this.root = root;
    this.orb = orb;
    this.label = label;
    this.hint = hint;
    this.current = null;
  }

  set(state, variant = state) {
    if (variant === this.current) return;
    this.current = variant;
    const [label, hint] = STATE_TEXT[variant] || STATE_TEXT[state] || [state, ""];
    this.root.dataset.state = state;
    document.body.dataset.state = state;
    this.label.textContent = label;
    this.hint.textContent = hint;
  }
}

/** Level meter fed from capture frames; draws once per animation frame at most. */
export class Meter {
  constructor(root) {
    this.root = root;
    this.fill = root.querySelector(".fill");
    this.level = 0;
    this.shown = -1;
    this.raf = 0;
  }

  /** rms in [0, 1] -> a perceptual 0..100 scale (-60 dBFS .. 0 dBFS). */
  push(rms) {
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    const target = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    // fast attack, slow release, like a VU meter
    this.level = target > this.level ? target : this.level * 0.85 + target * 0.15;
    if (!this.raf) this.raf = requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.raf = 0;
    const v = Math.round(this.level);
    if (v === this.shown) return;
    this.shown = v;
    this.fill.style.transform = `scaleX(${v / 100})`;
    this.root.setAttribute("aria-valuenow", String(v));
    document.documentElement.style.setProperty("--mic-level", (v / 100).toFixed(2));
  }
}

export class Banner {
  constructor(root) {
    this.root = root;
    this.text = root.querySelector(".banner-text");
    this.title = root.querySelector(".banner-title");
    this.action = root.querySelector(".banner-action");
    this.close = root.querySelector(".banner-close");
    this.close.addEventListener("click", () => this.hide());
    this.action.addEventListener("click", () => this.onAction && this.onAction());
    this.timer = 0;
    this.key = null;
  }

  /**
   * @param {string} kind  "error" | "warn" | "ok"
   * @param {string} key   what the message is about, so it can be replaced/cleared later
   */
  show({ kind = "error", key = "error", title, message, action, onAction, autoHideMs }) {
    clearTimeout(this.timer);
    this.key = key;
    this.root.dataset.kind = kind;
    this.title.textContent = title || "";
    this.title.hidden = !title;
    this.text.textContent = message;
    this.action.hidden = !action;
    this.action.textContent = action || "";
    this.onAction = onAction;
    this.root.hidden = false;
    if (autoHideMs) this.timer = setTimeout(() => this.hide(key), autoHideMs);
  }

  hide(key) {
    if (key && key !== this.key) return;
    clearTimeout(this.timer);
    this.root.hidden = true;
    this.key = null;
  }
}
