"""The LLM service's own metrics (names from docs/metrics.md)."""
from __future__ import annotations

from common import metrics
from services.llm.schema import GenerateDone, Priority

TTFT = metrics.histogram("voice_llm_ttft_seconds", "Request received to first token")
TOKENS_PER_SECOND = metrics.histogram(
    "voice_llm_tokens_per_second", "Decode speed per request (completion tokens / s)",
    buckets=(1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500))
TOKENS = metrics.counter("voice_llm_tokens_total", "Prompt (in) and completion (out) tokens",
                         ("direction",))

QUEUE_DEPTH = metrics.gauge("voice_llm_queue_depth", "Requests waiting for a model instance, by priority "
                            "(background ones never wait: always 0)", ("priority",))
KV_STORE_EVENTS = metrics.counter("voice_llm_kv_store_events_total",
                                  "Conversation KV caches saved to RAM when evicted, restored instead of "
                                  "evaluated again, dropped for room (kv_store.py)", ("event",))
KV_STORE_BYTES = metrics.gauge("voice_llm_kv_store_bytes", "RAM held by saved conversation KV caches")
FAST_PROMPT_TOKENS = metrics.counter("voice_llm_fast_prompt_tokens_total",
                                     "Prompt tokens sent to the faster weights' evaluator (fast_prompt.py): "
                                     "evaluated there, or evaluated on the instance's own weights because it "
                                     "was busy or a copy failed", ("outcome",))

PROMPT_THREADS_TOKENS = metrics.counter("voice_llm_prompt_threads_tokens_total",
                                        "Prompt tokens the evaluator evaluated, by the threads it gave them "
                                        "(cpu_share.py: as many as the rest of the machine left cores free)",
                                        ("threads",))


def prompt_threads_used(threads: int, tokens: int) -> None:
    PROMPT_THREADS_TOKENS.labels(**metrics.base(), threads=str(threads)).inc(tokens)


def fast_prompt_used(outcome: str, tokens: int) -> None:
    FAST_PROMPT_TOKENS.labels(**metrics.base(), outcome=outcome).inc(tokens)


def kv_store_changed(event: str, held: int) -> None:
    b = metrics.base()
    KV_STORE_EVENTS.labels(**b, event=event).inc()
    KV_STORE_BYTES.labels(**b).set(held)


def set_queue_depth(priority: Priority, n: int) -> None:
    QUEUE_DEPTH.labels(**metrics.base(), priority=priority.label).set(n)


def record(done: GenerateDone) -> None:
    """Observe one finished generation, cancelled ones included (their tokens were spent)."""
    b = metrics.base()
    TOKENS.labels(**b, direction="in").inc(done.prompt_tokens)
    TOKENS.labels(**b, direction="out").inc(done.completion_tokens)
    if done.completion_tokens:
        TTFT.labels(**b).observe(done.time_to_first_token_ms / 1000.0)
    if done.tokens_per_second > 0:
        TOKENS_PER_SECOND.labels(**b).observe(done.tokens_per_second)
