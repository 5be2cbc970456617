/**
 * The `/v1/realtime` WebSocket: JSON events in and out, the session id kept from
 * `session.created`, and automatic reconnection with capped exponential backoff
 * to the same session (the `voice-session.<id>` subprotocol), so a dropped connection or a restarted
 * gateway continues the conversation instead of starting a new one.
 *
 * Emits (as DOM events on the client):
 *   "status"  {state: "connecting"|"open"|"reconnecting"|"closed", attempt, delayMs, reason}
 *   "server"  {event}  every server event, parsed
 */

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const MAX_BACKOFF_MS = 10000;

// what a person should read for the usual WebSocket close codes
const CLOSE_REASONS = {
  1001: "the server is shutting down",
  1006: "the connection dropped",
  1011: "the server hit an internal error",
  1012: "the server is restarting",
  1013: "the server is busy",
};

/**
 * Where the page connects: its own server, unless the person typed another one
 * in the settings (shown on the page while it is used). Nothing in the page's
 * address can change it: a crafted link must not send the microphone elsewhere.
 */
export function realtimeUrl(server = "") {
  const own = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime`;
  const typed = (server || "").trim();
  if (!typed) return own;
  const url = new URL(typed.includes("://") ? typed : `wss://${typed}`);
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/realtime";
  return url.toString();
}

/** Whether ``url`` is this page's own server. */
export function isOwnServer(url) {
  return new URL(url, location.href).host === location.host;
}

// A credential travels as a WebSocket subprotocol, as browser Realtime clients send it.
const KEY_PROTOCOL = "openai-insecure-api-key.";
// The session to resume travels as a subprotocol, not in the URL: ids stay
// out of access logs (the gateway echoes back only "realtime").
const SESSION_PROTOCOL = "voice-session.";

export class RealtimeClient extends EventTarget {
  constructor(url, credential = "") {
    super();
    this.url = url;
    this.credential = credential;   // a client secret or API key; empty for a keyless local server
    this.ws = null;
    this.sessionId = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.state = "closed";
    this.eventSeq = 0;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.timer = null;
    const url = new URL(this.url, location.href);
    this.setState(this.attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      const cred = (this.credential || "").trim();
      const protocols = [];
      if (cred) protocols.push(KEY_PROTOCOL + cred);
      if (this.sessionId) protocols.push(SESSION_PROTOCOL + this.sessionId);
      ws = protocols.length ? new WebSocket(url.toString(), ["realtime", ...protocols]) : new WebSocket(url.toString());
    } catch (err) {
      this.scheduleReconnect(`cannot open ${url}: ${err.message}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState("open");
    };
    ws.onmessage = (m) => {
      let event;
      try {
        event = JSON.parse(m.data);
      } catch {
        event = { type: "error", error: { message: "The server sent a message that is not JSON." } };
      }
      this.dispatchEvent(new CustomEvent("server", { detail: event }));
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return; // an old socket closing after we moved on
      this.ws = null;
      if (this.stopped) {
        this.setState("closed");
        return;
      }
      const why = e.reason || CLOSE_REASONS[e.code] || `the connection closed (code ${e.code})`;
      this.scheduleReconnect(why);
    };
    // onerror is always followed by onclose, which does the reconnecting
    ws.onerror = () => {};
  }

  scheduleReconnect(reason) {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    // jitter so many tabs don't reconnect in lockstep after a gateway restart
    const delayMs = Math.min(MAX_BACKOFF_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
    this.attempt += 1;
    this.setState("reconnecting", { delayMs, reason });
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  /** Reconnect now instead of waiting for the backoff timer ("Retry now"). */
  retryNow() {
    if (this.isOpen) return;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.connect();
  }

  /** Connect again now, to the current url and credential (an open socket is dropped). */
  reconnect() {
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000, "changing server");
      this.ws = null;
    }
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "page closed");
  }

  /** Send one client event; returns false (and sends nothing) while disconnected. */
  send(event) {
    if (!this.isOpen) return false;
    if (!event.event_id) event.event_id = `evt_c${Date.now().toString(36)}_${++this.eventSeq}`;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, attempt: this.attempt, ...extra } }));
  }
}
