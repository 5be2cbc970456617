/**
 * The conversation as people read it: user turns (provisional text while the
 * recogniser is still listening, replaced by the final text), assistant turns
 * streaming in, the part of an answer cut off by an interruption marked as not
 * heard, sources and per-turn latency under each answer.
 *
 * The list is an ARIA log (a polite live region). Provisional text is hidden
 * from assistive technology, so a screen reader announces each utterance once,
 * when it is final, and the answer as it streams.
 */
import { renderTurnLatency } from "./latency.js";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Move a cut point back to the start of the word it falls in: a half-spoken word was not heard. */
function snapToWord(text, pos) {
  if (pos <= 0) return 0;
  if (pos >= text.length) return text.length;
  if (/\s/.test(text[pos]) || /\s/.test(text[pos - 1])) return pos;
  const back = text.lastIndexOf(" ", pos);
  return back < 0 ? 0 : back + 1;
}

export class Transcript {
  constructor(root, emptyHint) {
    this.root = root;
    this.emptyHint = emptyHint;
    this.items = new Map(); // item id -> entry
    this.localSeq = 0;
  }

  scroll() {
    // follow the conversation unless the reader scrolled up to read something
    const box = this.root.parentElement;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
    if (nearBottom || this.forceScroll) box.scrollTop = box.scrollHeight;
    this.forceScroll = false;
  }

  add(role, id) {
    if (this.emptyHint) this.emptyHint.hidden = true;
    const li = el("li", `msg ${role}`);
    li.dataset.item = id;
    const head = el("div", "who");
    head.append(el("span", "name", role === "user" ? "You" : "Assistant"));
    const badges = el("span", "badges");
    head.append(badges);
    const text = el("p", "text");
    const meta = el("div", "meta");
    li.append(head, text, meta);
    this.root.append(li);
    const entry = { id, role, li, text, badges, meta, value: "", segments: [], done: false };
    this.items.set(id, entry);
    this.forceScroll = true;
    this.scroll();
    return entry;
  }

  get(id) {
    return this.items.get(id);
  }

  badge(entry, label, kind) {
    const b = el("span", `badge ${kind}`, label);
    entry.badges.append(b);
    return b;
  }

  // ---- user turns ---------------------------------------------------------

  /** A user utterance started (speech detected or push-to-talk pressed). */
  userStarted(id) {
    const e = this.get(id) || this.add("user", id);
    if (!e.done) this.setInterim(e, "");
    return e;
  }

  setInterim(e, text) {
    e.li.classList.add("provisional");
    e.text.textContent = "";
    const span = el("span", "interim", text);
    span.setAttribute("aria-hidden", "true");
    const dots = el("span", "listening-dots");
    dots.setAttribute("aria-hidden", "true");
    dots.append(el("i"), el("i"), el("i"));
    e.text.append(span, dots);
    this.scroll();
  }

  userInterim(id, transcript) {
    const e = this.get(id) || this.add("user", id);
    if (e.done) return;
    this.setInterim(e, transcript);
  }

  userFinal(id, transcript) {
    const e = this.get(id) || this.add("user", id);
    e.done = true;
    e.li.classList.remove("provisional");
    e.text.textContent = "";
    const t = (transcript || "").trim();
    if (t) {
      e.value = t;
      e.text.append(document.createTextNode(t));
    } else {
      e.li.classList.add("empty");
      e.text.append(el("span", "note", "No words recognised."));
    }
    this.scroll();
  }

  userFailed(id, message) {
    const e = this.get(id) || this.add("user", id);
    e.done = true;
    e.li.classList.remove("provisional");
    e.li.classList.add("failed");
    e.text.textContent = "";
    e.text.append(el("span", "note", `Speech could not be transcribed: ${message}`));
  }

  /** A typed message, shown at once (the server does not echo it back as text). */
  userTyped(text) {
    const e = this.add("user", `local_${++this.localSeq}`);
    e.done = true;
    e.value = text;
    e.text.textContent = text;
    this.badge(e, "typed", "quiet");
    return e;
  }

  /** A placeholder (push-to-talk) gets the server's item id once the buffer is committed. */
  rekey(oldId, newId) {
    const e = this.items.get(oldId);
    if (!e || this.items.has(newId)) return;
    this.items.delete(oldId);
    e.id = newId;
    e.li.dataset.item = newId;
    this.items.set(newId, e);
  }

  /** A user turn that was started but dropped (e.g. the server reported an empty buffer). */
  drop(id) {
    const e = this.get(id);
    if (e && !e.done) {
      e.li.remove();
      this.items.delete(id);
    }
  }

  // ---- assistant turns ----------------------------------------------------

  assistant(id) {
    const e = this.get(id) || this.add("assistant", id);
    if (!e.li.classList.contains("streaming") && !e.done) e.li.classList.add("streaming");
    return e;
  }

  /**
   * Append streamed text. `audioAt` is how much audio (samples) had arrived for
   * this item when the text arrived: it lets us find, after an interruption,
   * which words had actually been spoken.
   */
  assistantDelta(id, delta, audioAt) {
    const e = this.assistant(id);
    if (!delta) return;
    e.segments.push({ start: e.value.length, audio: audioAt });
    e.value += delta;
    if (e.heardNode) {
      // text resumed after a truncation mark (false interruption): redraw it plainly
      this.clearUnheard(e);
    } else {
      e.text.append(document.createTextNode(delta));
    }
    this.scroll();
  }

  assistantDone(id) {
    const e = this.get(id);
    if (!e) return;
    e.done = true;
    e.li.classList.remove("streaming");
  }

  /**
   * Mark the text beyond what was heard. `heardSamples` is the played sample
   * count the truncate reported; `receivedSamples` is all audio that arrived.
   */
  markUnheard(id, heardSamples, receivedSamples) {
    const e = this.get(id);
    if (!e || e.role !== "assistant") return;
    const cut = snapToWord(e.value, this.heardChars(e, heardSamples, receivedSamples));
    e.cut = cut;
    const heard = e.value.slice(0, cut);
    const unheard = e.value.slice(cut);
    e.text.textContent = "";
    e.heardNode = document.createTextNode(heard);
    e.text.append(e.heardNode);
    if (unheard.trim()) {
      const u = el("span", "unheard");
      u.title = "Not spoken: the answer was interrupted here";
      const sr = el("span", "visually-hidden", " (not heard:) ");
      u.append(sr, document.createTextNode(unheard));
      e.text.append(u);
      e.li.classList.add("has-unheard");
    }
    if (!e.truncBadge) e.truncBadge = this.badge(e, "Interrupted", "warn");
    e.li.classList.remove("streaming");
    return { heard, unheard };
  }

  /** The reply resumed after a pause that was not an interruption: un-mark it. */
  resumed(id) {
    const e = this.get(id);
    if (!e || e.cut === undefined) return;
    this.clearUnheard(e);
    e.cut = undefined;
    if (e.truncBadge) e.truncBadge.remove();
    e.truncBadge = null;
    e.li.classList.add("streaming");
  }

  clearUnheard(e) {
    e.text.textContent = e.value;
    e.heardNode = null;
    e.li.classList.remove("has-unheard");
  }

  /**
   * Estimate how many characters had been spoken after `played` samples: each
   * text delta is taken to start where the audio received so far ended
   * (the gateway sends a clause's text just before its audio), and within a
   * clause characters are spread evenly over its audio.
   */
  heardChars(e, played, received) {
    const L = e.value.length;
    if (!L || played <= 0) return 0;
    if (played >= received) return e.done ? L : this.spanPos(e, played, received);
    return this.spanPos(e, played, received);
  }

  spanPos(e, played, received) {
    const segs = e.segments;
    const L = e.value.length;
    // collapse consecutive deltas that arrived with no audio between them
    const groups = [];
    for (const s of segs) {
      const last = groups[groups.length - 1];
      if (last && last.audio === s.audio) continue;
      groups.push({ start: s.start, audio: s.audio });
    }
    for (let i = 0; i < groups.length; i++) {
      const a0 = groups[i].audio;
      const a1 = i + 1 < groups.length ? groups[i + 1].audio : received;
      const c0 = groups[i].start;
      const c1 = i + 1 < groups.length ? groups[i + 1].start : L;
      if (played < a1 || i === groups.length - 1) {
        if (played <= a0) return c0;
        const span = Math.max(1, a1 - a0);
        return Math.min(c1, Math.round(c0 + ((played - a0) / span) * (c1 - c0)));
      }
    }
    return L;
  }

  status(id, label, kind, detail) {
    const e = this.get(id);
    if (!e) return;
    e.li.classList.remove("streaming");
    this.badge(e, label, kind);
    if (detail) e.meta.append(el("p", `note ${kind}`, detail));
  }

  sources(id, list) {
    const e = this.get(id);
    if (!e || !list.length) return;
    const box = el("div", "sources");
    box.append(el("span", "label", "Sources"));
    const ul = el("ul");
    for (const s of list) {
      const li = el("li");
      li.append(el("span", "title", s.title || s.source || "untitled"));
      if (s.source && s.title) li.append(el("span", "src", s.source));
      if (typeof s.score === "number") li.append(el("span", "score", s.score.toFixed(2)));
      ul.append(li);
    }
    box.append(ul);
    e.meta.append(box);
    this.scroll();
  }

  latency(id, timings, clientMs) {
    const e = this.get(id);
    if (!e) return;
    const node = renderTurnLatency(timings, clientMs);
    if (node) e.meta.append(node);
    this.scroll();
  }

  /** A system line in the conversation (connection lost / resumed). */
  notice(text, kind = "info") {
    if (this.emptyHint) this.emptyHint.hidden = true;
    const li = el("li", `notice ${kind}`, text);
    this.root.append(li);
    this.scroll();
  }
}
