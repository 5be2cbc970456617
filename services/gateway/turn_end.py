"""What a response leaves behind when it ends: the turn counted by outcome,
its timings observed (completed turns), and its release sample queued on the
session store for the release judge (release/samples.py). Metrics carry
``variant="canary"`` when any of the session's services serves it from its
canary; the sample names which."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from release.samples import Sample
from services.gateway import metrics

if TYPE_CHECKING:
    from services.gateway.response import Response


def ended(resp: "Response", outcome: str) -> None:
    """``outcome``: completed | failed | cancelled (metrics.TURN_OUTCOMES)."""
    variants = resp.conv.backends.variants
    labels = metrics.turn_base(variants)
    metrics.TURNS.labels(**labels, outcome=outcome).inc()
    if outcome == "completed":
        resp.timings.observe(resp.trace_id, labels)
    resp.conv.store.add_sample(sample(resp.timings.as_ms(), resp.timings.churn(), variants,
                                      failed=outcome == "failed"))


def sample(ms: dict[str, float | None], churn: float | None, variants: dict[str, str], *,
           failed: bool) -> Sample:
    # Wall time: samples from every gateway are compared in one window.
    return Sample(ts=time.time(), canary=frozenset(s for s, v in variants.items() if v == "canary"),
                  v2v_ms=ms.get("voice_to_voice_ms"), asr_final_ms=ms.get("asr_final_ms"),
                  llm_first_token_ms=ms.get("llm_first_token_ms"),
                  tts_first_audio_ms=ms.get("tts_first_audio_ms"), churn=churn, failed=failed)
