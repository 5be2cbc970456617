"""Where the ASR's stream sessions (session.py) and the process-wide interim
scheduler (interims.py) report their figures: the interfaces that
metrics.PrometheusObserver implements, and no-op ones for tests and tools."""
from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """Where the session reports its figures (metrics.py; a no-op in tests)."""

    def audio(self, seconds: float) -> None: ...
    def interim(self, rtf: float, churn: int, interval_s: float | None,
                audio_interval_s: float | None = None) -> None: ...
    def final(self, rtf: float, eou_to_final_s: float) -> None: ...
    def flush_unreliable(self) -> None: ...
    def model_pass(self, kind: str, model_seconds: float) -> None: ...
    def flush_adopted(self) -> None: ...


class NullObserver:
    def audio(self, seconds: float) -> None:
        pass

    def interim(self, rtf: float, churn: int, interval_s: float | None,
                audio_interval_s: float | None = None) -> None:
        pass

    def final(self, rtf: float, eou_to_final_s: float) -> None:
        pass

    def flush_unreliable(self) -> None:
        pass

    def model_pass(self, kind: str, model_seconds: float) -> None:
        pass

    def flush_adopted(self) -> None:
        pass


class QueueObserver(Protocol):
    """Where the scheduler reports its figures (metrics.py; a no-op in tests)."""

    def interim_queue(self, queued: int, running: int) -> None: ...
    def interim_waited(self, seconds: float) -> None: ...


class NullQueueObserver:
    def interim_queue(self, queued: int, running: int) -> None:
        pass

    def interim_waited(self, seconds: float) -> None:
        pass
