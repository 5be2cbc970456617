"""GatewaySettings: every knob of the gateway, resolved flag → env GATEWAY_* →
default by common.config.load_settings (re-exported from ``__main__``).

Default turn-taking values and why (measured by bench/bench_gateway_endpointing.py
on the project's clips with the real VAD service; figures in docs/gateway.md):
- ``silence_duration_ms`` 500: the longest pause the VAD finds inside any of
  the clips is 96 ms, and with the gateway's VAD settings no clip is split at
  any window from 300 ms up (split rate 0/5). 500 ms is five times that
  longest pause and longer than the 200-400 ms comma pauses of conversational
  speech, while leaving room in the 800 ms voice-to-voice budget; the
  mid-sentence-pause test (turns) checks the continuation logic itself.
- ``vad_min_silence_ms`` 128 (4 VAD frames): longer than any pause inside the
  clips, and short, so "silence began" — and with it the final transcription
  — comes early, hidden by the rest of the window.
- ``min_interrupt_ms`` 300 and ``false_interruption_timeout_ms`` 800: a crisp
  "stop" (~350 ms) confirms a barge-in; a cough (empty transcript) never does,
  and the paused reply resumes 0.8 s after the noise ends."""
from __future__ import annotations

import dataclasses

from common.config import setting
from common.components import GATEWAY, REDIS_URL, by_name


def _addr(name: str) -> str:
    return by_name(name).address


@dataclasses.dataclass
class GatewaySettings:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(GATEWAY.port, "HTTP/WebSocket port")
    vad_addrs: str = setting(_addr("vad"), "comma-separated VAD service addresses")
    asr_addrs: str = setting(_addr("asr"), "comma-separated ASR service addresses")
    llm_addrs: str = setting(_addr("llm"), "comma-separated LLM service addresses")
    rag_addrs: str = setting(_addr("rag"), "comma-separated RAG service addresses")
    tts_addrs: str = setting(_addr("tts"), "comma-separated TTS service addresses")
    vad_canary_addrs: str = setting("", "canary VAD addresses (empty = no canary)")
    asr_canary_addrs: str = setting("", "canary ASR addresses (empty = no canary)")
    llm_canary_addrs: str = setting("", "canary LLM addresses (empty = no canary)")
    rag_canary_addrs: str = setting("", "canary RAG addresses (empty = no canary)")
    tts_canary_addrs: str = setting("", "canary TTS addresses (empty = no canary)")
    # Who may connect (services/gateway/access.py, docs/security.md).
    api_keys: str = setting("", "comma-separated API keys (16+ characters) clients must present; required "
                            "when host is not a loopback address (empty = none)")
    api_keys_file: str = setting("", "file with more API keys, one a line (a mounted secret; empty = none)")
    allow_insecure: bool = setting(False, "serve a non-loopback host without API keys: anyone who reaches "
                                   "the port may use the assistant (default false)")
    allowed_origins: str = setting("", "browser origins that may connect, comma-separated, * = any (empty = "
                                   "the gateway's own page; with API keys, any page holding a credential)")
    client_secret_ttl_s: int = setting(600, "lifetime of a client secret from POST /v1/realtime/client_secrets")
    ssl_certfile: str = setting("", "TLS certificate (PEM) to serve https/wss (empty = plain http/ws)")
    ssl_keyfile: str = setting("", "TLS private key (PEM) of ssl_certfile")
    canary_percent: float = setting(0.0, "share of new sessions (0-100) routed to canary backends, for "
                                    "services without a release record in Redis (docs/releases.md)")
    release_refresh_s: float = setting(1.0, "seconds between reads of the release weights from Redis and "
                                       "probes of canary health (routing reads only the last read)")
    redis_url: str = setting(REDIS_URL, "Redis URL for session state (empty = memory only)")
    redis_password_file: str = setting("", "file holding the Redis password (a mounted secret; empty = the "
                                       "URL's own, if any)")
    session_ttl_s: int = setting(3600, "seconds a stored session outlives its last change: how long a "
                                 "conversation is kept (retention)")
    store_redacted: bool = setting(True, "replace card numbers, IBANs, e-mails, phone numbers and street "
                                   "addresses in what is stored of a conversation (a resumed session remembers "
                                   "[CARD], not the number; default true)")
    # Admission control (services/gateway/admission.py). The default comes from
    # the measured capacity of the 2-core reference host: `make capacity` writes
    # docs/capacity.md, whose report of record (2026-12-07) met the SLO at 6
    # conversations (p95 1054 ms; 1076 in a second 6-user step) and broke it at 8
    # (p95 1489 ms), with the load test's spoken questions, none of them about the
    # documents (a grounded answer's prompt costs more: docs/capacity-rechecks.md,
    # re-check 26). A bigger host measures its own number and sets GATEWAY_MAX_SESSIONS.
    max_sessions: int = setting(6, "concurrent sessions before new ones get server_busy (0 = unlimited; "
                                "default: the measured capacity of a 2-core host, docs/capacity.md)")
    busy_retry_after_s: float = setting(5.0, "retry hint (retry_after_s) sent with server_busy")
    max_message_bytes: int = setting(1 << 20, "largest client WebSocket message accepted")
    input_queue_ms: int = setting(4000, "input audio queued ahead of processing before appends are refused")
    outbox_max_events: int = setting(1024, "server events queued for a client that is not reading before it is disconnected")
    audio_lead_ms: int = setting(1000, "how far output audio is sent ahead of real-time playback")
    silence_duration_ms: int = setting(500, "default end-of-turn silence (chosen by measurement)")
    prefix_padding_ms: int = setting(300, "default audio kept before speech onset")
    vad_threshold: float = setting(0.5, "default VAD speech probability threshold")
    vad_min_silence_ms: int = setting(128, "VAD silence before it reports speech stopped")
    # semantic_vad (services/gateway/semantic.py): the end-of-turn silence after
    # a stop the VAD's Smart Turn model calls complete, and after one it calls
    # incomplete, by eagerness. Chosen by bench/bench_turn_model.py (docs/benchmarks.md).
    semantic_threshold: float = setting(0.8, "semantic_vad: end-of-turn probability at which a stop is complete")
    semantic_complete_ms: int = setting(200, "semantic_vad: end-of-turn silence after a complete stop")
    semantic_high_ms: int = setting(800, "semantic_vad: silence an incomplete turn waits, eagerness high")
    semantic_medium_ms: int = setting(1500, "semantic_vad: silence an incomplete turn waits, eagerness "
                                      "medium and auto")
    semantic_low_ms: int = setting(3000, "semantic_vad: silence an incomplete turn waits, eagerness low")
    vad_min_speech_ms: int = setting(120, "VAD speech before it reports speech started")
    # Clients send 10-40 ms chunks; each gRPC message costs more CPU (~1 ms across
    # both ends) than the VAD's model does on a frame (0.12 ms): audio is sent in
    # whole VAD frames (silero: 32 ms, nothing is decided on part of one, so no
    # delay) and, while speech lasts, to the ASR in chunks of asr_chunk_ms (an
    # interim may start that much later; a flush or end of utterance sends the rest).
    vad_chunk_ms: int = setting(32, "audio is sent to the VAD in whole chunks of this many ms "
                                "(its frame: 32 ms for silero)")
    asr_chunk_ms: int = setting(64, "speech is sent to the ASR in chunks of at least this many ms")
    # The assistant's own voice, played on speakers, comes back into the
    # microphone; cancelled with the played audio as reference (echo.py,
    # measured in docs/benchmarks.md: ~25 dB, ~1% of a core per session while playing).
    echo_cancel: bool = setting(True, "cancel the assistant's own audio (played on the client's speakers) "
                                "in the microphone audio before VAD and ASR (default true)")
    # A voice over a loud echo is held back from the VAD by AEC3 for up to ~0.5 s;
    # its energy in the canceller's output shows it at once (echo_onset.py;
    # measured in docs/benchmarks.md, "Echo": barge-in under echo p50 207 -> 84 ms).
    echo_onset_pause: bool = setting(True, "pause the reply when the echo canceller's output jumps over a "
                                     "loud echo (a voice AEC3 holds back from the VAD; echo_onset.py), resume "
                                     "it if no speech follows (default true)")
    echo_trace_dir: str = setting("", "diagnosis: write each stretch of echo cancelling (mic, reference, "
                                  "output) here as .npz files (echo_trace.py; empty = off)")
    min_interrupt_ms: int = setting(300, "default speech needed to confirm a barge-in")
    false_interruption_timeout_ms: int = setting(800, "default wait before a paused reply resumes after non-speech")
    # Start retrieval → LLM → TTS as soon as the turn's final transcript is in,
    # inside the silence window; everything is held until the turn is confirmed
    # and dropped silently if the user goes on (docs/gateway.md).
    preemptive_generation: bool = setting(True, "default: start the answer inside the end-of-turn window")
    # The first clause is cut early so TTS starts sooner (services/gateway/clauses.py);
    # later clauses keep the usual rules. 0 = the usual rules for the first clause too.
    first_clause_weak_words: int = setting(2, "words before a comma may end the first clause (0 = usual rule)")
    first_clause_max_words: int = setting(4, "first clause cut after this many words without punctuation (0 = off)")
    clause_growth: float = setting(2.0, "each later clause is cut after this many times the previous one's "
                                        "word cap (4, 8, 16, ...) unless a sentence end or comma comes "
                                        "first, so it is synthesised before the audio ahead of it runs "
                                        "out (0 = later clauses only at punctuation)")
    preempt_from_interim: bool = setting(True, "start the preemptive answer from an ASR interim that covers the speech end")
    llm_prefill: bool = setting(True, "while the user speaks, warm an LLM instance with the history and the "
                                "words heard so far, so the answer's prompt is mostly evaluated at the end of turn")
    prefill_retrieval: bool = setting(True, "the prefill while the user speaks also retrieves for the words "
                                      "so far and quotes the passages (one RAG search per prefill)")
    llm_warm_after_answer: bool = setting(True, "after each answer, warm the LLM with the prompt the next "
                                          "turn starts with (a history window move is paid then, in the "
                                          "background); needs llm_prefill")
    llm_prefill_min_words: int = setting(3, "words heard before the first prefill of a turn")
    asr_flush_on_pause: bool = setting(True, "start the final transcription at the VAD's first unvoiced frame "
                                       "(a flush), not min_silence later at its stop; the stop keeps it when "
                                       "no speech came in between")
    asr_language: str = setting("en", "ASR language code (empty = auto-detect)")
    asr_interim_interval_ms: int = setting(0, "ASR interim interval (0 = server default)")
    # Beam 1 halves end-of-utterance → final time against beam 5 for about one
    # more error per 70 words (services/asr/README.md): for a voice turn the
    # latency is worth more. 0 = the ASR service's default (5).
    asr_beam_size: int = setting(1, "ASR final-pass beam size for voice turns (0 = service default)")
    final_timeout_s: float = setting(5.0, "longest wait for a final transcript once a turn has ended")
    instructions: str = setting(
        "You are a helpful voice assistant. Answer in one to three short spoken sentences, "
        "without lists or markdown.", "default system instructions")
    voice: str = setting("", "default TTS voice id (empty = the service's default)")
    llm_max_tokens: int = setting(160, "maximum tokens per reply")
    allow_system_items: bool = setting(False, "clients may create 'system' conversation items (default false: "
                                       "the deployment's instructions are the only system text besides "
                                       "session.instructions)")
    max_items: int = setting(200, "conversation items a session keeps; beyond it the oldest are deleted "
                             "(conversation.item.deleted), which bounds its memory and stored size")
    history_items: int = setting(24, "conversation items given to the LLM (most recent; the window moves in "
                                 "blocks of half this, so the prompt prefix stays cached)")
    retrieval: bool = setting(True, "retrieval on by default when the RAG service has documents")
    rag_k: int = setting(3, "passages retrieved per turn")
    rag_min_score: float = setting(0.3, "passages below this cosine score are not used")
    rag_decline_below: float = setting(0.5, "a question whose retrieved passages hold less than this share of "
                                            "its content words is answered \"I don't know\" without the LLM "
                                            "(grounding.py); 0 = never")
    cancel_wait_s: float = setting(2.0, "bounded wait for cancelled backend calls to stop")
    backend_timeout_s: float = setting(30.0, "deadline of one LLM/TTS/RAG call")
    # Measured first-token times are ~0.05-2 s (docs/capacity.md); 15 s of
    # silence from a stream that owes a reply is a hang, not load.
    backend_idle_timeout_s: float = setting(15.0, "a backend stream that owes a reply (the next LLM token or "
                                            "TTS chunk, an ASR final) and sends nothing for this long hangs: "
                                            "the call fails with an error naming the service")
    # The VAD processes a second of audio in ~20 ms of CPU; five seconds behind
    # is broken, not busy, and every moment of it nobody is heard.
    vad_idle_timeout_s: float = setting(5.0, "a VAD stream sent audio it has not acknowledged (it reports "
                                        "progress every second of audio) that sends nothing for this long "
                                        "hangs: the stream is reopened, on another replica if there is one. "
                                        "0 = off (no progress asked: for VADs older than VadConfig.progress_ms, "
                                        "which would look hung; upgrade the VADs before the gateways)")
    # Fault tolerance (services/gateway/backends/breaker.py, failover.py).
    breaker_failures: int = setting(5, "consecutive failed calls to one backend address before its circuit "
                                    "opens (its sessions then fail over to another replica of their variant)")
    breaker_cooldown_s: float = setting(10.0, "an open circuit lets one probe call through after this long")
    retry_budget_ratio: float = setting(0.2, "retries (a RAG search; an LLM/TTS stream that failed fast before "
                                        "its first reply, on another replica) allowed per request made, so "
                                        "retries never multiply the load on a failing backend")
    # Drills (services/gateway/faults, docs/drills.md).
    admin_api_keys: str = setting("", "comma-separated keys (16+ characters) for /admin/* (fault injection "
                                  "for drills); empty = the admin endpoints are refused")
    fault_max_duration_s: float = setting(900.0, "longest an injected fault may last before it ends by itself")
    variant: str = setting("stable", "release variant label for metrics")
    otlp_endpoint: str = setting("", "OTLP/gRPC trace endpoint (empty = tracing off)")
    web_dir: str = setting("web", "static browser client folder (relative to the repo root)")
    log_level: str = setting("INFO", "log level")

    def redis_password(self) -> str | None:
        from pathlib import Path

        return (Path(self.redis_password_file).read_text().strip() or None) if self.redis_password_file else None

    def keys(self) -> list[str]:
        """api_keys plus the lines of api_keys_file."""
        from pathlib import Path
        from services.gateway.access import split_list

        extra = Path(self.api_keys_file).read_text() if self.api_keys_file else ""
        return split_list(self.api_keys) + split_list(extra)

    def addrs(self, service: str, canary: bool = False) -> list[str]:
        raw = getattr(self, f"{service}_canary_addrs" if canary else f"{service}_addrs")
        return [a.strip() for a in raw.split(",") if a.strip()]
