/**
 * `window.__voiceTest`: counters the browser tests read instead of scraping
 * pixels (frames sent, audio the playback worklet received and played,
 * truncates sent with their audio_end_ms, state). Plain data, no behaviour:
 * the page works the same with it absent.
 */
export function createTestHook() {
  const hook = {
    state: "connecting",
    connection: "connecting",
    sessionId: null,
    micOn: false,
    connections: 0,
    reconnects: 0,
    sessionUpdates: 0,
    framesSent: 0,
    frameBytes: 0,
    textsSent: 0,
    audioDeltas: 0,
    // route: "loopback" (through WebRTC, so the browser's echo canceller sees it) or "direct"
    playback: { framesReceived: 0, samplesReceived: 0, samplesPlayed: 0, underruns: 0, clears: 0, playing: false, route: null },
    truncates: [],
    resumes: 0,
    truncatedConfirmed: [],
    clears: [],
    userTranscripts: [],
    assistantText: "",
    responses: [],
    lastTimings: null,
    errors: [],
    micError: null,
    serverEvents: {},
  };
  window.__voiceTest = hook;
  return hook;
}
