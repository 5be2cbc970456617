"""The VAD's own metrics (names from docs/metrics.md)."""
from __future__ import annotations

from common.metrics import counter, histogram

# A silero frame takes ~0.1 ms on a CPU: VOICE_BUCKETS (10 ms and up) would put
# every observation in the first bucket, so this histogram gets finer ones.
FRAME_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)

FRAMES = counter("voice_vad_frames_total", "32 ms frames classified")
SEGMENTS = counter("voice_vad_speech_segments_total", "speech segments started")
FRAME_SECONDS = histogram("voice_vad_frame_seconds", "inference time per frame", buckets=FRAME_BUCKETS)
# How long a stop waited for its pause's end-of-turn score (0 when it was ready).
TURN_WAIT_SECONDS = histogram("voice_vad_turn_wait_seconds", "wait of a speech stop for its end-of-turn score",
                              buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5))
