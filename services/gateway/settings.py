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
from stack.components import GATEWAY, REDIS_URL, by_name


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
    canary_percent: float = setting(0.0, "share of new sessions (0-100) routed to canary backends")
    redis_url: str = setting(REDIS_URL, "Redis URL for session state (empty = memory only)")
    session_ttl_s: int = setting(3600, "seconds a stored session outlives its last change")
    max_message_bytes: int = setting(1 << 20, "largest client WebSocket message accepted")
    input_queue_ms: int = setting(4000, "input audio queued ahead of processing before appends are refused")
    outbox_max_events: int = setting(1024, "server events queued for a client that is not reading before it is disconnected")
    audio_lead_ms: int = setting(1000, "how far output audio is sent ahead of real-time playback")
    silence_duration_ms: int = setting(500, "default end-of-turn silence (chosen by measurement)")
    prefix_padding_ms: int = setting(300, "default audio kept before speech onset")
    vad_threshold: float = setting(0.5, "default VAD speech probability threshold")
    vad_min_silence_ms: int = setting(128, "VAD silence before it reports speech stopped")
    vad_min_speech_ms: int = setting(120, "VAD speech before it reports speech started")
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
    preempt_from_interim: bool = setting(True, "start the preemptive answer from an ASR interim that covers the speech end")
    llm_prefill: bool = setting(True, "while the user speaks, warm an LLM instance with the history and the "
                                "words heard so far, so the answer's prompt is mostly evaluated at the end of turn")
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
    history_items: int = setting(24, "conversation items given to the LLM (most recent)")
    retrieval: bool = setting(True, "retrieval on by default when the RAG service has documents")
    rag_k: int = setting(3, "passages retrieved per turn")
    rag_min_score: float = setting(0.3, "passages below this cosine score are not used")
    cancel_wait_s: float = setting(2.0, "bounded wait for cancelled backend calls to stop")
    backend_timeout_s: float = setting(30.0, "deadline of one LLM/TTS/RAG call")
    variant: str = setting("stable", "release variant label for metrics")
    otlp_endpoint: str = setting("", "OTLP/gRPC trace endpoint (empty = tracing off)")
    web_dir: str = setting("web", "static browser client folder (relative to the repo root)")
    log_level: str = setting("INFO", "log level")

    def addrs(self, service: str, canary: bool = False) -> list[str]:
        raw = getattr(self, f"{service}_canary_addrs" if canary else f"{service}_addrs")
        return [a.strip() for a in raw.split(",") if a.strip()]
