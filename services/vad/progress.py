"""Progress responses of a VAD stream (VadConfig.progress_ms): pure
bookkeeping over the audio processed, used by the servicer."""
from __future__ import annotations

from common.stubs import vad_pb2
from services.vad import convert


class Progress:
    """When a stream is owed a response with no event (VadConfig.progress_ms):
    once ``every_ms`` of audio were processed since the last response of any
    kind. The client holds the stream to these, so a VAD that accepts audio
    and answers nothing is seen as hung (services/gateway/backends/deadlines.py)."""

    def __init__(self, every_ms: int) -> None:
        self.every_ms = every_ms
        self.reported_ms = 0     # audio_processed_ms of the last response sent

    def with_progress(self, responses: list[vad_pb2.DetectResponse],
                      processed_ms: int) -> list[vad_pb2.DetectResponse]:
        if responses:
            self.reported_ms = processed_ms
            return responses
        if self.every_ms and processed_ms - self.reported_ms >= self.every_ms:
            self.reported_ms = processed_ms
            return [convert.progress_to_pb(processed_ms)]
        return responses
