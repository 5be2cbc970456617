"""The ASR service's own figures (names from docs/metrics.md), reported by
each stream session through the Observer interface and by the process-wide
interim scheduler through its QueueObserver interface (both in observers.py).

Interim cadence is reported two ways because under load it stretches
(interims.py): wall time between interims (what a user sees) and seconds of
new speech between them (what the service promises: at most 500 ms for a lone
stream on an idle host, README.md); the queue gauges say why it stretched."""
from __future__ import annotations

from common.metrics import RATIO_BUCKETS, base, counter, gauge, histogram

AUDIO_SECONDS = counter("voice_asr_audio_seconds_total", "Audio received, seconds")
RTF = histogram("voice_asr_rtf", "Model time / audio time of one pass", ("kind",),
                buckets=RATIO_BUCKETS)
INTERIM_INTERVAL = histogram("voice_asr_interim_interval_seconds",
                             "Wall time between consecutive interims of an utterance")
INTERIM_AUDIO_INTERVAL = histogram(
    "voice_asr_interim_audio_interval_seconds",
    "Seconds of new speech between consecutive interims of an utterance (the first: since its start)")
INTERIM_CHURN = histogram("voice_asr_interim_churn_words",
                          "Words of the previous interim revised by the next one",
                          buckets=(0, 1, 2, 3, 5, 8, 13, 21))
INTERIM_QUEUED = gauge("voice_asr_interim_queued", "Streams waiting for an interim pass")
INTERIM_RUNNING = gauge("voice_asr_interim_running", "Interim passes running")
INTERIM_BATCH = histogram("voice_asr_interim_batch_streams",
                          "Streams decoded together in one interim pass (ASR_INTERIM_BATCH)",
                          buckets=(1, 2, 3, 4, 6, 8, 12, 16))
INTERIM_WAIT = histogram("voice_asr_interim_wait_seconds",
                         "Interim asked for -> pass started (waiting for a slot or a final)")
FLUSHES_UNRELIABLE = counter(
    "voice_asr_flushes_unreliable_total",
    "Flush passes whose trimmed decode looked unreliable: no provisional text, not redone")
PASSES = counter("voice_asr_passes_total",
                 "Final-quality model passes that gave a text, at normal priority, by kind: flush "
                 "(started at a pause, before the end of the utterance) or final (an end of "
                 "utterance that adopted no flush; its trimmed try and full-window redo together)", ("kind",))
PASS_SECONDS = counter("voice_asr_pass_seconds_total",
                       "Model time of the passes, by kind as voice_asr_passes_total", ("kind",))
FLUSHES_ADOPTED = counter(
    "voice_asr_flushes_adopted_total",
    "Finals that took a flush's text instead of a pass of their own (the rest of "
    "voice_asr_passes_total{kind=\"flush\"} was work for speech that went on)")
EOU_TO_FINAL = histogram("voice_asr_eou_to_final_seconds", "force_eou received -> final sent")


class PrometheusObserver:
    """observers.Observer and observers.QueueObserver that record into the
    process's Prometheus registry."""

    def audio(self, seconds: float) -> None:
        AUDIO_SECONDS.labels(**base()).inc(seconds)

    def interim(self, rtf: float, churn: int, interval_s: float | None,
                audio_interval_s: float | None = None) -> None:
        b = base()
        RTF.labels(**b, kind="interim").observe(rtf)
        INTERIM_CHURN.labels(**b).observe(churn)
        if interval_s is not None:
            INTERIM_INTERVAL.labels(**b).observe(interval_s)
        if audio_interval_s is not None:
            INTERIM_AUDIO_INTERVAL.labels(**b).observe(audio_interval_s)

    def final(self, rtf: float, eou_to_final_s: float) -> None:
        b = base()
        RTF.labels(**b, kind="final").observe(rtf)
        EOU_TO_FINAL.labels(**b).observe(eou_to_final_s)

    def flush_unreliable(self) -> None:
        FLUSHES_UNRELIABLE.labels(**base()).inc()

    def model_pass(self, kind: str, model_seconds: float) -> None:
        b = base()
        PASSES.labels(**b, kind=kind).inc()
        PASS_SECONDS.labels(**b, kind=kind).inc(model_seconds)

    def flush_adopted(self) -> None:
        FLUSHES_ADOPTED.labels(**base()).inc()

    def interim_queue(self, queued: int, running: int) -> None:
        b = base()
        INTERIM_QUEUED.labels(**b).set(queued)
        INTERIM_RUNNING.labels(**b).set(running)

    def interim_waited(self, seconds: float) -> None:
        INTERIM_WAIT.labels(**base()).observe(seconds)

    def interim_batch(self, streams: int) -> None:
        INTERIM_BATCH.labels(**base()).observe(streams)
