"""semantic_vad: how long the silence after a stop must last before the turn
ends, from the VAD's end-of-turn probability (Smart Turn, in the VAD service)
and the session's eagerness.

A stop the model calls complete (probability at or above the threshold) ends
the turn after the short window; one it calls incomplete waits the long
window of the session's eagerness, so "eight of spades … four of clubs" is one
turn. The Realtime API defines eagerness as how long an unfinished turn may
wait: low waits longest, high shortest, auto is medium. A stop without a
probability (a VAD without the model, or a late score) gets the session's
server_vad window, silence_duration_ms. The windows are settings, chosen by
measurement (GatewaySettings, docs/benchmarks.md)."""
from __future__ import annotations

from services.gateway.session import TurnDetection
from services.gateway.settings import GatewaySettings


def silence_window_ms(td: TurnDetection, probability: float | None, s: GatewaySettings) -> int:
    """The end-of-turn silence, counted from the end of speech, for a stop."""
    if td.type != "semantic_vad" or probability is None:
        return td.silence_duration_ms
    if probability >= s.semantic_threshold:
        return s.semantic_complete_ms
    return {"low": s.semantic_low_ms, "high": s.semantic_high_ms}.get(td.eagerness, s.semantic_medium_ms)
