"""The TTS service's own metrics (names from docs/metrics.md)."""
from __future__ import annotations

from common.metrics import RATIO_BUCKETS, base, counter, gauge, histogram
from services.tts.scheduler import Priority

TTFA = histogram("voice_tts_ttfa_seconds", "request -> first audio chunk")
RTF = histogram("voice_tts_rtf", "synthesis time / audio time", buckets=RATIO_BUCKETS)
CHARACTERS = counter("voice_tts_characters_total", "characters synthesised")
QUEUE_DEPTH = gauge("voice_tts_queue_depth", "clauses waiting for a synthesis worker, by priority",
                    ("priority",))
QUEUE_WAIT = histogram("voice_tts_queue_wait_seconds", "time a clause waited for a synthesis worker, "
                       "by priority", ("priority",))


def set_depth(priority: Priority, n: int) -> None:
    """Scheduler callback (under its lock: a gauge set, nothing slower)."""
    QUEUE_DEPTH.labels(**base(), priority=priority.label).set(n)


def observe_wait(priority: Priority, seconds: float) -> None:
    QUEUE_WAIT.labels(**base(), priority=priority.label).observe(seconds)
