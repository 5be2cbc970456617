/**
 * Conversation settings: what the settings panel edits, what is remembered in
 * localStorage, and the `session.update` event that applies them. Sent after
 * every (re)connection, so a resumed session keeps the person's choices.
 */

const KEY = "voice-assistant.settings.v1";

export const VOICES = [{ id: "en_US-joe-medium", label: "Joe (US English)" }];

export const DEFAULTS = Object.freeze({
  mode: "vad",             // "vad": the server detects turns; "ptt": push-to-talk
  voice: "en_US-joe-medium",
  silenceMs: 500,          // silence that ends a turn: the gateway's measured default (docs/gateway.md)
  bargeIn: true,           // speaking over the assistant interrupts it
  retrieval: true,
  retrievalK: 3,
  instructions: "",
  server: "",              // empty: the server this page came from
  credential: "",          // a client secret or API key, when the server asks for one
});

export function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || "{}");
    return { ...DEFAULTS, ...saved };
  } catch {
    return { ...DEFAULTS };
  }
}

export function saveSettings(s) {
  try {
    localStorage.setItem(KEY, JSON.stringify(s));
  } catch {
    // private mode / storage full: settings still apply to this page
  }
}

export function sessionUpdate(s, { inputRate = 24000, outputRate = 24000 } = {}) {
  const turnDetection = s.mode === "ptt" ? null : {
    type: "server_vad",
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: Number(s.silenceMs),
    create_response: true,
    interrupt_response: Boolean(s.bargeIn),
  };
  const session = {
    type: "realtime",
    output_modalities: ["audio"],
    audio: {
      input: { format: { type: "audio/pcm", rate: inputRate }, turn_detection: turnDetection },
      output: { format: { type: "audio/pcm", rate: outputRate }, voice: s.voice },
    },
    retrieval: { enabled: Boolean(s.retrieval), k: Number(s.retrievalK) || 3 },
  };
  if (s.instructions && s.instructions.trim()) session.instructions = s.instructions.trim();
  return { type: "session.update", session };
}

/** Two-way binding between the settings form and a settings object. */
export function bindSettingsForm(form, settings, onChange) {
  const f = form.elements;
  const voiceSelect = f.namedItem("voice");
  const ensureVoice = (id) => {
    if (!id || id === "default") return; // the server's own default: nothing to add
    if (![...voiceSelect.options].some((o) => o.value === id)) {
      voiceSelect.append(new Option(id, id));
    }
  };
  VOICES.forEach((v) => voiceSelect.append(new Option(v.label, v.id)));
  const silenceOut = form.querySelector("#silence-value");

  const show = () => {
    ensureVoice(settings.voice);
    voiceSelect.value = settings.voice;
    f.namedItem("silenceMs").value = settings.silenceMs;
    silenceOut.textContent = `${settings.silenceMs} ms`;
    f.namedItem("bargeIn").checked = settings.bargeIn;
    f.namedItem("retrieval").checked = settings.retrieval;
    f.namedItem("instructions").value = settings.instructions;
    f.namedItem("server").value = settings.server;
    f.namedItem("credential").value = settings.credential;
    for (const r of form.querySelectorAll('input[name="mode"]')) r.checked = r.value === settings.mode;
  };
  show();

  const read = () => ({
    mode: form.querySelector('input[name="mode"]:checked').value,
    voice: voiceSelect.value,
    silenceMs: Number(f.namedItem("silenceMs").value),
    bargeIn: f.namedItem("bargeIn").checked,
    retrieval: f.namedItem("retrieval").checked,
    retrievalK: settings.retrievalK,
    instructions: f.namedItem("instructions").value,
    server: f.namedItem("server").value.trim(),
    credential: f.namedItem("credential").value.trim(),
  });

  f.namedItem("silenceMs").addEventListener("input", (e) => {
    silenceOut.textContent = `${e.target.value} ms`;
  });
  // apply on change (not on every keystroke of the instructions box)
  form.addEventListener("change", () => {
    Object.assign(settings, read());
    saveSettings(settings);
    onChange(settings);
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  return { show, ensureVoice };
}
