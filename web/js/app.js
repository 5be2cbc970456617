/**
 * Page entry point: builds the pieces, wires the buttons and keyboard, connects.
 *
 * Keyboard: M starts/stops the microphone, Space (held) talks in push-to-talk
 * mode, Esc interrupts the assistant, / focuses the text box.
 */
import { Capture } from "./capture.js";
import { Controller } from "./controller.js";
import { Playback } from "./playback.js";
import { RealtimeClient, isOwnServer, realtimeUrl } from "./realtime.js";
import { bindSettingsForm, loadSettings } from "./settings.js";
import { createTestHook } from "./test-hook.js";
import { Transcript } from "./transcript.js";
import { Banner, Meter, StateView } from "./ui.js";

const $ = (sel) => document.querySelector(sel);

const hook = createTestHook();
const settings = loadSettings();
const meter = new Meter($("#meter"));
const banner = new Banner($("#banner"));
const transcript = new Transcript($("#transcript"), $("#empty"));
const stateView = new StateView({ root: $("#voice"), orb: $("#orb"), label: $("#state-label"), hint: $("#state-hint") });
const client = new RealtimeClient(safeUrl(settings.server), settings.credential);
const playback = new Playback({ rate: 24000, prebufferMs: 80 });

let controller;
const capture = new Capture({
  targetRate: 24000,
  frameMs: 20,
  onFrame: (pcm) => controller.sendFrame(pcm),
  onLevel: (rms) => meter.push(rms),
});

controller = new Controller({
  client, capture, playback, transcript, stateView, meter, banner,
  latencyRoot: $("#latency"), settings, hook,
});

const micBtn = $("#mic-btn");
const pttBtn = $("#ptt-btn");
const stopBtn = $("#stop-btn");

function syncControls(state) {
  const ptt = settings.mode === "ptt";
  micBtn.setAttribute("aria-pressed", String(controller.micOn));
  micBtn.querySelector(".label").textContent = controller.micOn
    ? (ptt ? "Turn microphone off" : "Stop talking")
    : (ptt ? "Turn microphone on" : "Start talking");
  micBtn.classList.toggle("on", controller.micOn);
  pttBtn.hidden = !ptt;
  pttBtn.disabled = client.state !== "open";
  pttBtn.classList.toggle("held", controller.pttHeld);
  stopBtn.hidden = state !== "speaking" && state !== "thinking";
  $("#meter-wrap").classList.toggle("off", !controller.micOn);
}
controller.onRender = syncControls;

async function startMic() {
  micBtn.disabled = true;
  try {
    await playback.init().catch(() => {}); // same gesture unlocks audio output
    await capture.start();
    controller.micOn = true;
    hook.micError = null;
    banner.hide("mic");
  } catch (err) {
    hook.micError = { kind: err.kind || "failed", message: err.message };
    banner.show({ kind: "error", key: "mic", title: "Microphone unavailable", message: err.message });
  } finally {
    micBtn.disabled = false;
    controller.render();
  }
}

async function stopMic() {
  controller.pttUp();
  await capture.stop();
  controller.micOn = false;
  controller.render();
}

capture.onEnded = () => {
  stopMic();
  banner.show({ kind: "error", key: "mic", title: "Microphone disconnected",
    message: "The microphone stopped delivering audio (unplugged or taken by another app). Press Start talking to try again." });
};

micBtn.addEventListener("click", () => (controller.micOn ? stopMic() : startMic()));
stopBtn.addEventListener("click", () => controller.stopAnswer());

// push-to-talk: pointer and keyboard (Space/Enter on the button, or Space anywhere)
async function pttPress() {
  if (!controller.micOn) await startMic();
  if (controller.micOn) await controller.pttDown();
}
pttBtn.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pttBtn.setPointerCapture(e.pointerId);
  pttPress();
});
pttBtn.addEventListener("pointerup", () => controller.pttUp());
pttBtn.addEventListener("pointercancel", () => controller.pttUp());
pttBtn.addEventListener("keydown", (e) => {
  if ((e.key === " " || e.key === "Enter") && !e.repeat) {
    e.preventDefault();
    pttPress();
  }
});
pttBtn.addEventListener("keyup", (e) => {
  if (e.key === " " || e.key === "Enter") controller.pttUp();
});

const typing = (t) => t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "Escape" && !$("#settings").open) {
    if (controller.playback.playing || controller.activeResponse) controller.stopAnswer();
    return;
  }
  if (typing(e.target) || e.target.tagName === "BUTTON") return;
  if (e.key === " " && settings.mode === "ptt" && !e.repeat) {
    e.preventDefault();
    pttPress();
  } else if (e.key === "m" || e.key === "M") {
    e.preventDefault();
    micBtn.click();
  } else if (e.key === "/") {
    e.preventDefault();
    $("#text-input").focus();
  }
});
document.addEventListener("keyup", (e) => {
  if (e.key === " " && settings.mode === "ptt" && !typing(e.target) && e.target.tagName !== "BUTTON") controller.pttUp();
});

// the text box
$("#composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("#text-input");
  if (await controller.sendText(input.value)) input.value = "";
});

// settings dialog
const dialog = $("#settings");
function safeUrl(server) {
  try {
    return realtimeUrl(server);
  } catch {
    return realtimeUrl("");   // not a URL: stay on this page's server
  }
}

// Another server than the page's own is never silent: it is named at the top.
function showServer() {
  const note = $("#server-note");
  note.hidden = isOwnServer(client.url);
  note.textContent = note.hidden ? "" : `Connected to ${new URL(client.url).host}`;
}

const form = bindSettingsForm($("#settings-form"), settings, () => {
  const url = safeUrl(settings.server);
  if (url !== client.url || settings.credential !== client.credential) {
    client.url = url;
    client.credential = settings.credential;
    client.sessionId = null;   // a conversation does not move to another server or credential
    showServer();
    client.reconnect();
  }
  controller.applySettings();
  if (settings.mode === "vad") controller.pttUp();
  $("#settings-saved").textContent = "Saved — applies to this conversation now.";
});
controller.onVoiceKnown = (voice) => form.ensureVoice(voice);
$("#settings-open").addEventListener("click", () => {
  $("#settings-saved").textContent = "";
  dialog.showModal();
});
$("#settings-close").addEventListener("click", () => dialog.close());
dialog.addEventListener("click", (e) => {
  if (e.target === dialog) dialog.close(); // click on the backdrop
});

window.addEventListener("pagehide", () => client.close());
showServer();
client.connect();
controller.render();
