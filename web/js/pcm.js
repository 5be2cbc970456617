/** PCM16 <-> base64 helpers for the Realtime protocol's audio fields. */

/** ArrayBuffer (PCM16 little-endian) -> base64 string. */
export function bytesToBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  const CHUNK = 0x8000; // String.fromCharCode has an argument-count limit
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/** base64 string -> ArrayBuffer; throws on malformed input (the caller reports it). */
export function base64ToBytes(b64) {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

export function samplesToMs(samples, rate) {
  return Math.floor((samples * 1000) / rate); // never claim more than was played
}
