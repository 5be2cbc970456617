"""The gateway's metrics (the gateway rows of docs/metrics.md, exact names).
Labels service/model/variant come from common.metrics.init at start."""
from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from common.metrics import BASE_LABELS, VOICE_BUCKETS, base, counter, gauge, histogram
from release.state import STATES as _RELEASE_STATES

__all__ = ["base"]

ACTIVE_SESSIONS = gauge("voice_gateway_active_sessions", "open WebSocket sessions")
SESSION_LIMIT = gauge("voice_gateway_session_limit", "max_sessions setting (0 = unlimited)")
SESSIONS_REFUSED = counter("voice_gateway_sessions_refused_total",
                           "sessions refused at connect with server_busy, by reason (limit, draining)",
                           ("reason",))
WS_MESSAGES = counter("voice_gateway_ws_messages_total", "Realtime events", ("direction", "type"))
TURNS = counter("voice_gateway_turns_total", "responses by outcome", ("outcome",))
VOICE_TO_VOICE = histogram("voice_gateway_voice_to_voice_seconds",
                           "last voiced sample -> first audio delta sent")
STAGE = histogram("voice_gateway_stage_seconds", "per-stage latency of a turn", ("stage",),
                  buckets=VOICE_BUCKETS)
AUDIO_UNDERRUN = histogram("voice_gateway_audio_underrun_seconds",
                           "silences inside an answer: its next audio came after the listener had "
                           "played all it was sent (the count is the number of underruns)",
                           buckets=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
BARGE_INS = counter("voice_gateway_barge_ins_total", "responses interrupted by user speech")
FALSE_INTERRUPTIONS = counter("voice_gateway_false_interruptions_total",
                              "pauses that resumed (cough, backchannel, an echo onset no speech followed)")
PREEMPTIVE_RUNS = counter("voice_gateway_preemptive_runs_total",
                          "answers started inside the end-of-turn window, by outcome", ("outcome",))
ANSWERS_DECLINED = counter("voice_gateway_answers_declined_total",
                            "answers given as \"I don't know\" without the LLM: the retrieved passages "
                            "cover too little of the question (grounding.py); counted when completed")
LLM_PREFILLS = counter("voice_gateway_llm_prefills_total",
                       "LLM cache warm-ups while the user speaks, by outcome (prefill, busy, error; replaced: "
                       "stopped for a newer interim whose words retrieved other passages)",
                       ("outcome",))
BARGE_IN_REACTION = histogram("voice_gateway_barge_in_reaction_seconds",
                              "speech onset -> output_audio_buffer.cleared")
BARGE_IN_CONFIRM = histogram("voice_gateway_barge_in_confirm_seconds",
                            "speech onset -> barge-in confirmed (a real word heard, the reply cancelled)")
ECHO_CANCEL_SECONDS = counter("voice_gateway_echo_cancel_seconds_total",
                              "microphone audio run through the echo canceller (the assistant's audio "
                              "playing, or its echo's tail)")
ECHO_CANCEL_CPU = counter("voice_gateway_echo_cancel_cpu_seconds_total", "CPU time spent cancelling echo")
ECHO_ERLE = histogram("voice_gateway_echo_erle_db",
                      "echo return loss enhancement (mic energy in / out, dB) over each stretch of "
                      "the assistant playing; the user talking over it lowers it",
                      buckets=(0.0, 3.0, 6.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0))
ECHO_TRANSCRIPTS = counter("voice_gateway_echo_transcripts_total",
                           "transcripts over the reply that were mostly the reply's own recent words: "
                           "its echo, so no barge-in")
TASK_FAILURES = counter("voice_gateway_task_failures_total",
                        "unexpected failures of a session's tasks, by task and action taken (critical "
                        "tasks: restart, close; one-shot tasks: dropped)", ("task", "action"))
ERRORS = counter("voice_gateway_errors_total", "error events sent, by code", ("code",))
BACKEND_ERRORS = counter("voice_gateway_backend_errors_total", "backend call failures", ("backend",))
FAULTS_INJECTED = counter("voice_gateway_faults_injected_total",
                          "faults injected into backend calls by a drill (/admin/faults), by backend and kind",
                          ("backend", "kind"))
BREAKER_OPENS = counter("voice_gateway_breaker_opens_total",
                        "circuit breakers opened (a backend address failed too often in a row)", ("backend",))
BACKEND_RETRIES = counter("voice_gateway_backend_retries_total",
                          "calls retried once within the retry budget: a failed RAG search, or an LLM/TTS "
                          "stream that failed before its first reply, on another replica", ("backend",))
SESSIONS_LOST = counter("voice_gateway_sessions_lost_total",
                        "sessions dropped from the memory fallback before Redis stored them, by reason "
                        "(memory_full, retention)", ("reason",))
STORE_PENDING = gauge("voice_gateway_store_pending_sessions",
                      "sessions changed in memory and not yet written to Redis (0 when Redis keeps up)")
REDIS_FAILURES = counter("voice_gateway_redis_failures_total", "Redis operations that failed", ("op",))
QUEUE_DEPTH = gauge("voice_gateway_queue_depth", "depth of bounded per-session queues (sum over sessions)",
                    ("queue",))
# Here "variant" is the variant of the backend the session was routed to.
CANARY_SESSIONS = counter("voice_gateway_canary_sessions_total", "sessions routed per variant", ("backend",))
CANARY_FALLBACKS = counter("voice_gateway_canary_fallbacks_total",
                           "sessions hashed (or resumed) to a canary that had no serving replica, sent to "
                           "stable instead", ("backend",))
# Releases (release/, docs/releases.md), as this gateway reads them from Redis.
RELEASE_STATES = ("none",) + _RELEASE_STATES
RELEASE_WEIGHT = gauge("voice_release_weight", "canary weight (%) new sessions are routed by", ("backend",))
RELEASE_STATE = gauge("voice_release_state", "1 for the release's current state (none = no release record)",
                      ("backend", "state"))


class _Decisions:
    """voice_release_decisions_total{backend, verdict}: the controller's verdict
    counts, kept in the release records and mirrored here (the controller is
    a CLI loop, not a scrape target); every gateway exports the same values,
    so panels take the max over gateways."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.last: dict[str, dict] = {}
        self.labels: dict[str, str] = {}

    def set(self, counts: dict[str, dict[str, int]], last: dict[str, dict] | None = None) -> None:
        # Labelled with the process labels of the moment, as a gauge child is.
        self.labels = base()
        self.counts = counts
        self.last = last or {}

    def describe(self):
        return [CounterMetricFamily("voice_release_decisions", "", labels=BASE_LABELS + ("backend", "verdict")),
                GaugeMetricFamily("voice_release_last_decision_timestamp_seconds", "",
                                  labels=BASE_LABELS + ("backend", "verdict", "rule"))]

    def collect(self):
        fam = CounterMetricFamily("voice_release_decisions", "release judge verdicts (pass, fail, inconclusive)",
                                  labels=BASE_LABELS + ("backend", "verdict"))
        b = self.labels
        for svc, counts in sorted(self.counts.items()):
            for verdict, n in sorted(counts.items()):
                fam.add_metric([b["service"], b["model"], b["variant"], svc, verdict], n)
        yield fam
        last = GaugeMetricFamily("voice_release_last_decision_timestamp_seconds",
                                 "when the release judge last decided, with its verdict and the rule that decided "
                                 "(one series per backend: the latest)",
                                 labels=BASE_LABELS + ("backend", "verdict", "rule"))
        for svc, d in sorted(self.last.items()):
            last.add_metric([b["service"], b["model"], b["variant"], svc, str(d.get("verdict", "")),
                             str(d.get("rule", ""))], float(d.get("at") or 0.0))
        yield last


RELEASE_DECISIONS = _Decisions()
REGISTRY.register(RELEASE_DECISIONS)


TURN_OUTCOMES = ("completed", "cancelled", "failed")
BACKENDS = ("vad", "asr", "llm", "rag", "tts")
SERVER_ERROR_CODES = ("backend_unavailable", "internal_error", "server_busy")


def init_series() -> None:
    """Export the SLO and failure series at 0 from start (after common.metrics.init).

    A labelled series is otherwise created by its first event, and Prometheus'
    rate() cannot see the step from "no series" to that first value: the first
    turn after a gateway start (often the slowest, caches cold) never counted
    against the latency SLO, and a first failure was invisible the same way."""
    from services.gateway.supervise import CRITICAL_TASKS  # supervise imports this module

    b = base()
    for outcome in TURN_OUTCOMES:
        TURNS.labels(**b, outcome=outcome)
    VOICE_TO_VOICE.labels(**b)
    BARGE_IN_REACTION.labels(**b)
    BARGE_IN_CONFIRM.labels(**b)
    for task in CRITICAL_TASKS:
        for action in ("restart", "close"):
            TASK_FAILURES.labels(**b, task=task, action=action)
    # The alerts on these are rates too (VoiceGatewayBackendErrors, VoiceRedisFailures):
    # an outage's first failure must count, which is what a drill measures.
    # The server's own error codes (the "Error events by code" panel, a drill's check):
    # a fault's first burst of a code never seen before must show as a rise.
    for code in SERVER_ERROR_CODES:
        ERRORS.labels(**b, code=code)
    for backend in BACKENDS:
        BACKEND_ERRORS.labels(**b, backend=backend)
        BACKEND_RETRIES.labels(**b, backend=backend)
    for op in ("read", "write", "delete"):
        REDIS_FAILURES.labels(**b, op=op)
    for reason in ("memory_full", "retention"):
        SESSIONS_LOST.labels(**b, reason=reason)
    STORE_PENDING.labels(**b).set(0)


def count_routing(backend: str, variant: str) -> None:
    CANARY_SESSIONS.labels(**(base() | {"variant": variant}), backend=backend).inc()


def turn_base(variants: dict[str, str]) -> dict[str, str]:
    """Base labels of a turn's metrics: ``variant`` is "canary" when any of the
    session's services serves it from its canary (which ones: the turn's
    trace attributes and log lines, and its release sample)."""
    return base() | ({"variant": "canary"} if "canary" in variants.values() else {})


def variant_attrs(variants: dict[str, str]) -> dict[str, str]:
    """Trace attributes naming each service's variant: ``variant.asr`` = stable|canary."""
    return {f"variant.{svc}": v for svc, v in sorted(variants.items())}


def observe(hist, value: float, trace_id: str | None, base_labels: dict[str, str] | None = None,
            **labels: str) -> None:
    """Observe with the turn's trace id as an exemplar when tracing is on."""
    h = hist.labels(**(base_labels or base()), **labels)
    if trace_id:
        h.observe(value, exemplar={"trace_id": trace_id})
    else:
        h.observe(value)
