"""The ASR service's own figures (names from docs/metrics.md), reported by
each stream session through the Observer interface."""
from __future__ import annotations

from common.metrics import RATIO_BUCKETS, base, counter, histogram

AUDIO_SECONDS = counter("voice_asr_audio_seconds_total", "Audio received, seconds")
RTF = histogram("voice_asr_rtf", "Model time / audio time of one pass", ("kind",),
                buckets=RATIO_BUCKETS)
INTERIM_INTERVAL = histogram("voice_asr_interim_interval_seconds",
                             "Wall time between consecutive interims of an utterance")
INTERIM_CHURN = histogram("voice_asr_interim_churn_words",
                          "Words of the previous interim revised by the next one",
                          buckets=(0, 1, 2, 3, 5, 8, 13, 21))
EOU_TO_FINAL = histogram("voice_asr_eou_to_final_seconds", "force_eou received -> final sent")


class PrometheusObserver:
    """session.Observer that records into the process's Prometheus registry."""

    def audio(self, seconds: float) -> None:
        AUDIO_SECONDS.labels(**base()).inc(seconds)

    def interim(self, rtf: float, churn: int, interval_s: float | None) -> None:
        b = base()
        RTF.labels(**b, kind="interim").observe(rtf)
        INTERIM_CHURN.labels(**b).observe(churn)
        if interval_s is not None:
            INTERIM_INTERVAL.labels(**b).observe(interval_s)

    def final(self, rtf: float, eou_to_final_s: float) -> None:
        b = base()
        RTF.labels(**b, kind="final").observe(rtf)
        EOU_TO_FINAL.labels(**b).observe(eou_to_final_s)
