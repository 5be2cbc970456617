"""The TTS service's own metrics (names from docs/metrics.md)."""
from __future__ import annotations

from common.metrics import RATIO_BUCKETS, counter, histogram

TTFA = histogram("voice_tts_ttfa_seconds", "request -> first audio chunk")
RTF = histogram("voice_tts_rtf", "synthesis time / audio time", buckets=RATIO_BUCKETS)
CHARACTERS = counter("voice_tts_characters_total", "characters synthesised")
