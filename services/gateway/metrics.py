"""The gateway's metrics (the gateway rows of docs/metrics.md, exact names).
Labels service/model/variant come from common.metrics.init at start."""
from __future__ import annotations

from common.metrics import VOICE_BUCKETS, base, counter, gauge, histogram

__all__ = ["base"]

ACTIVE_SESSIONS = gauge("voice_gateway_active_sessions", "open WebSocket sessions")
WS_MESSAGES = counter("voice_gateway_ws_messages_total", "Realtime events", ("direction", "type"))
TURNS = counter("voice_gateway_turns_total", "responses by outcome", ("outcome",))
VOICE_TO_VOICE = histogram("voice_gateway_voice_to_voice_seconds",
                           "last voiced sample -> first audio delta sent")
STAGE = histogram("voice_gateway_stage_seconds", "per-stage latency of a turn", ("stage",),
                  buckets=VOICE_BUCKETS)
BARGE_INS = counter("voice_gateway_barge_ins_total", "responses interrupted by user speech")
FALSE_INTERRUPTIONS = counter("voice_gateway_false_interruptions_total",
                              "pauses that resumed (cough, backchannel)")
PREEMPTIVE_RUNS = counter("voice_gateway_preemptive_runs_total",
                          "answers started inside the end-of-turn window, by outcome", ("outcome",))
LLM_PREFILLS = counter("voice_gateway_llm_prefills_total",
                       "LLM cache warm-ups while the user speaks, by outcome (prefill, busy, error)",
                       ("outcome",))
BARGE_IN_REACTION = histogram("voice_gateway_barge_in_reaction_seconds",
                              "speech onset -> output_audio_buffer.cleared")
ERRORS = counter("voice_gateway_errors_total", "error events sent, by code", ("code",))
BACKEND_ERRORS = counter("voice_gateway_backend_errors_total", "backend call failures", ("backend",))
REDIS_FAILURES = counter("voice_gateway_redis_failures_total", "Redis operations that failed", ("op",))
QUEUE_DEPTH = gauge("voice_gateway_queue_depth", "depth of bounded per-session queues (sum over sessions)",
                    ("queue",))
# Here "variant" is the variant of the backend the session was routed to.
CANARY_SESSIONS = counter("voice_gateway_canary_sessions_total", "sessions routed per variant", ("backend",))


def count_routing(backend: str, variant: str) -> None:
    CANARY_SESSIONS.labels(**(base() | {"variant": variant}), backend=backend).inc()


def observe(hist, value: float, trace_id: str | None, **labels: str) -> None:
    """Observe with the turn's trace id as an exemplar when tracing is on."""
    h = hist.labels(**base(), **labels)
    if trace_id:
        h.observe(value, exemplar={"trace_id": trace_id})
    else:
        h.observe(value)
