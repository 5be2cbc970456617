// The official OpenAI JavaScript SDK's Realtime client (openai 6.x,
// OpenAIRealtimeWS, which always connects with wss) against the gateway:
// a text turn, a spoken turn (manual commit) and a cancelled answer.
//   node realtime_check.mjs <baseURL, e.g. https://localhost:8443/v1> <api key>
// Trust a self-signed gateway with NODE_EXTRA_CA_CERTS=cert.pem. Prints one
// JSON line with what happened; exits 1 on the first thing that goes wrong.
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ apiKey, baseURL });
const rt = new OpenAIRealtimeWS({ model: "local" }, client);
const seen = [];
const waiters = [];
rt.on("event", (ev) => {
  seen.push(ev);
  for (const w of [...waiters]) {
    if (w.test(ev)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(ev);
    }
  }
});
rt.on("error", (err) => fail(`error: ${err.message || JSON.stringify(err)}`));

function fail(why) {
  console.log(JSON.stringify({ ok: false, why, types: seen.map((e) => e.type).slice(-30) }));
  process.exit(1);
}

// Waits for an event from index ``from`` of what was seen (default: from now on).
function waitFor(test, what, from = seen.length, ms = 15000) {
  const already = seen.slice(from).find(test);
  if (already) return Promise.resolve(already);
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`timed out waiting for ${what}`), ms);
    waiters.push({ test, resolve: (ev) => { clearTimeout(timer); resolve(ev); } });
  });
}

const send = (ev) => rt.send(ev);
const type = (t) => (ev) => ev.type === t;

const created = await waitFor(type("session.created"), "session.created", 0);

// 1. A text turn.
let mark = seen.length;
send({ type: "conversation.item.create",
       item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hello?" }] } });
send({ type: "response.create", response: { output_modalities: ["text"] } });
const textDone = await waitFor(type("response.done"), "the text answer", mark);
const text = textDone.response.output[0].content[0].text;

// 2. A spoken turn: 1 s of PCM16 at 24 kHz, committed by hand.
mark = seen.length;
send({ type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: null } } } });
await waitFor(type("session.updated"), "session.updated", mark);
mark = seen.length;
const chunk = Buffer.alloc(480 * 2);
for (let i = 0; i < 480; i++) chunk.writeInt16LE(Math.round(8000 * Math.sin(i / 5)), i * 2);
for (let i = 0; i < 50; i++) send({ type: "input_audio_buffer.append", audio: chunk.toString("base64") });
send({ type: "input_audio_buffer.commit" });
const heard = await waitFor(type("conversation.item.input_audio_transcription.completed"), "the transcript", mark);
mark = seen.length;
send({ type: "response.create" });
const spoken = await waitFor(type("response.done"), "the spoken answer", mark);
const audioDeltas = seen.filter((e) => e.type === "response.output_audio.delta" && e.response_id === spoken.response.id);

// 3. A long spoken answer cancelled as soon as it starts.
mark = seen.length;
send({ type: "response.create", response: { output_modalities: ["audio"] } });
const third = await waitFor(type("response.created"), "the third response", mark);
send({ type: "response.cancel" });
const cancelled = await waitFor((ev) => ev.type === "response.done" && ev.response.id === third.response.id,
                                "the cancelled answer");

console.log(JSON.stringify({
  ok: true, session: created.session.id.slice(0, 5), text, transcript: heard.transcript,
  spoken_status: spoken.response.status, audio_deltas: audioDeltas.length,
  cancelled_status: cancelled.response.status, cancelled_reason: cancelled.response.status_details?.reason,
}));
rt.close();
process.exit(0);
