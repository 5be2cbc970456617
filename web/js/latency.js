/**
 * Per-turn latency from `response.done`'s `metadata.timings` (a JSON string the
 * gateway fills in): voice-to-voice and each stage, drawn as bars on one scale
 * so a person sees at a glance where the time went.
 */

// [key, short label, what it measures] (definitions from the gateway's timings)
export const STAGES = [
  ["speech_end_ms", "Speech end (VAD)", "last voiced sample until the VAD reported silence"],
  ["endpoint_ms", "End of turn", "last voiced sample until the turn was judged over (silence window)"],
  ["asr_final_ms", "Final transcript", "end of turn signalled to ASR until its final text"],
  ["asr_wait_ms", "Waiting for ASR", "time the turn waited for the final text after the silence window"],
  ["retrieval_ms", "Retrieval", "knowledge-base search"],
  ["llm_first_token_ms", "LLM first token", "request to the language model until its first token"],
  ["tts_first_audio_ms", "TTS first audio", "first clause sent to speech synthesis until its first audio"],
];

/** metadata.timings may be a JSON string or (from other servers) already an object. */
export function parseTimings(metadata) {
  if (!metadata || metadata.timings == null) return null;
  const t = metadata.timings;
  if (typeof t === "object") return t;
  try {
    return JSON.parse(t);
  } catch {
    return null;
  }
}

export function parseSources(metadata) {
  if (!metadata || metadata.sources == null) return [];
  try {
    const s = typeof metadata.sources === "string" ? JSON.parse(metadata.sources) : metadata.sources;
    return Array.isArray(s) ? s : [];
  } catch {
    return [];
  }
}

export function fmtMs(ms) {
  if (ms == null || Number.isNaN(ms)) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The stage rows (label, bar, value) on a common scale. */
export function stageRows(timings, clientMs) {
  const rows = el("dl", "stages");
  const present = STAGES.filter(([k]) => typeof timings[k] === "number");
  const total = timings.voice_to_voice_ms;
  const scale = Math.max(1, total || 0, ...present.map(([k]) => timings[k]));
  for (const [key, label, help] of present) {
    const row = el("div", "stage");
    row.dataset.stage = key;
    row.title = help;
    row.append(el("dt", null, label));
    const dd = el("dd");
    const bar = el("span", "bar");
    bar.style.setProperty("--w", `${Math.max(1.5, (timings[key] / scale) * 100)}%`);
    bar.setAttribute("aria-hidden", "true");
    dd.append(bar, el("span", "v", fmtMs(timings[key])));
    row.append(dd);
    rows.append(row);
  }
  if (typeof clientMs === "number") {
    const row = el("div", "stage client");
    row.dataset.stage = "client";
    row.title = "measured here: end of your turn (or sending a message) until the first sound played";
    row.append(el("dt", null, "First sound here"));
    const dd = el("dd");
    const bar = el("span", "bar");
    bar.style.setProperty("--w", `${Math.min(100, Math.max(1.5, (clientMs / scale) * 100))}%`);
    bar.setAttribute("aria-hidden", "true");
    dd.append(bar, el("span", "v", fmtMs(clientMs)));
    row.append(dd);
    rows.append(row);
  }
  return rows;
}

/** The headline: voice-to-voice from the gateway, or for a typed message
 * (no voice in) the time to first sound measured here. */
function headline(timings, clientMs) {
  if (typeof timings.voice_to_voice_ms === "number") return ["Voice to voice", timings.voice_to_voice_ms];
  if (typeof clientMs === "number") return ["Message to first sound", clientMs];
  return ["Answer", null];
}

/** Compact, expandable latency line under one answer. */
export function renderTurnLatency(timings, clientMs) {
  if (!timings) return null;
  const d = el("details", "turn-latency");
  const s = el("summary");
  const [label, ms] = headline(timings, clientMs);
  s.append(el("span", "label", label), el("strong", null, fmtMs(ms)));
  d.append(s, stageRows(timings, clientMs));
  return d;
}

/** The side panel: the latest turn's breakdown. */
export function renderLatencyPanel(root, timings, clientMs) {
  root.textContent = "";
  if (!timings) {
    root.append(el("p", "muted", "Ask something to see where the time goes."));
    return;
  }
  const big = el("div", "v2v");
  const [label, ms] = headline(timings, clientMs);
  big.append(el("span", "num", fmtMs(ms)), el("span", "cap", label.toLowerCase()));
  root.append(big, stageRows(timings, clientMs));
}
