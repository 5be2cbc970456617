/**
 * Playback where the browser's echo canceller can hear it. Chrome's
 * echoCancellation (on the microphone, capture.js) only removes audio that
 * was played from an RTCPeerConnection: audio from an AudioContext goes to
 * the speakers unseen, comes back into the microphone, and the assistant
 * interrupts itself (issue #13). So the playback graph ends in a
 * MediaStream sent through a local RTCPeerConnection pair (no network: host
 * candidates on this machine) and played by an <audio> element.
 *
 * Opus at a high bitrate keeps the voice clean; the loop adds a few tens of
 * ms. Where WebRTC is missing or the loop fails, the caller plays to
 * ctx.destination as before (the server-side canceller still applies).
 */

/** Raise Opus' bitrate and turn off DTX/FEC trade-offs meant for networks. */
function tuneOpus(sdp) {
  return sdp.replace(/a=fmtp:(\d+) (.*useinbandfec=1.*)/g,
    (_, pt, params) => `a=fmtp:${pt} ${params};maxaveragebitrate=128000;stereo=0;usedtx=0`);
}

/**
 * Send `stream` through a local peer-connection pair; resolves with
 * {audio, close} once the <audio> element plays the far side.
 */
export async function playThroughLoopback(stream, { timeoutMs = 3000 } = {}) {
  if (typeof RTCPeerConnection === "undefined") throw new Error("no RTCPeerConnection");
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  const close = () => { a.close(); b.close(); };
  let timer;
  try {
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
    const remote = new Promise((resolve) => { b.ontrack = (e) => resolve(e.streams[0] || new MediaStream([e.track])); });
    // ontrack fires before any media flows: wait for the connection itself, or
    // the page would "play" into a loop that never carries sound.
    const connected = new Promise((resolve, reject) => {
      b.onconnectionstatechange = () => {
        if (b.connectionState === "connected") resolve();
        else if (b.connectionState === "failed") reject(new Error("loopback connection failed"));
      };
    });
    for (const track of stream.getAudioTracks()) a.addTrack(track, stream);
    const offer = await a.createOffer();
    await a.setLocalDescription(offer);
    await b.setRemoteDescription({ type: "offer", sdp: tuneOpus(offer.sdp) });
    const answer = await b.createAnswer();
    await b.setLocalDescription(answer);
    await a.setRemoteDescription({ type: "answer", sdp: tuneOpus(answer.sdp) });
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("loopback did not connect")), timeoutMs);
    });
    const [farSide] = await Promise.race([Promise.all([remote, connected]), timeout]);
    const audio = new Audio();
    audio.autoplay = true;
    audio.srcObject = farSide;
    await Promise.race([audio.play(), timeout]);
    return { audio, close: () => { audio.srcObject = null; close(); } };
  } catch (err) {
    close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
