"""One turn's measured timings, reported in response.done's metadata
("timings", a JSON string of milliseconds) and as gateway metrics.

Definitions (all from the injected clock; "last voiced sample" is the wall time
the sample at the VAD's speech end arrived, for a client sending in real time):
- speech_end_ms: last voiced sample → the VAD reporting speech stopped
- endpoint_ms: last voiced sample → end of turn decided (the silence window)
- asr_final_ms: force_eou sent → final transcript received (the last segment),
  or given up on after final_timeout_s (the turn went on with the interims):
  an ASR too slow to answer still shows in this stage, and in a release's judge
- asr_wait_ms: end of turn → final transcript, when the window did not hide it
- retrieval_ms: RAG search
- llm_first_token_ms: LLM request → first token
- tts_first_audio_ms: first clause sent to TTS → its first audio
- voice_to_voice_ms: last voiced sample → first response.output_audio.delta sent
- transcript_ms: last voiced sample → the turn's final transcript received
- first_clause_ms: LLM first token → first clause sent to TTS (the rest of
  that clause's tokens)
- audio_ready_ms: last voiced sample → first audio synthesized (less than
  voice_to_voice_ms when a preemptive answer waited for the window to close)
- preempt_lead_ms: preemptive run started → end of turn (how much of the
  answer's pipeline ran inside the silence window; absent without preemption)
- interim_gap_ms: the VAD's speech end minus the end of the audio the last
  ASR interim of the last segment covered (0 = that interim heard it all)
- interim_churn: the share of the turn's ASR interims that rewrote words an
  earlier interim had shown (not only the last, still growing word); what a
  reader of live captions sees flicker. Judged for ASR releases.

A preemptive run measures its own stages (retrieval, LLM, TTS) from when it
started and takes the turn's stages (speech end, final, end of turn) when it
is released (``adopt``)."""
from __future__ import annotations

import dataclasses
import json

from services.gateway import metrics


@dataclasses.dataclass
class TurnTimings:
    speech_end: float | None = None
    vad_stopped: float | None = None
    eou_sent: float | None = None
    final: float | None = None
    turn_end: float | None = None
    retrieval_s: float | None = None
    llm_start: float | None = None
    llm_first_token: float | None = None
    tts_start: float | None = None
    tts_first_audio: float | None = None
    first_audio_sent: float | None = None
    preempt_start: float | None = None
    interim_gap_ms: float | None = None
    interims: int = 0
    interim_rewrites: int = 0

    TURN_FIELDS = ("speech_end", "vad_stopped", "eou_sent", "final", "turn_end", "interim_gap_ms",
                   "interims", "interim_rewrites")

    def count_interim(self, previous: str, text: str) -> None:
        self.interims += 1
        if rewrote(previous, text):
            self.interim_rewrites += 1

    def churn(self) -> float | None:
        return self.interim_rewrites / self.interims if self.interims else None

    def adopt(self, turn: "TurnTimings") -> None:
        """Take the user turn's own times (a preemptive run started before they were all known)."""
        for f in self.TURN_FIELDS:
            setattr(self, f, getattr(turn, f))

    @staticmethod
    def _ms(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(max(0.0, b - a) * 1000.0, 1)

    def as_ms(self) -> dict[str, float | None]:
        return {
            "speech_end_ms": self._ms(self.speech_end, self.vad_stopped),
            "endpoint_ms": self._ms(self.speech_end, self.turn_end),
            "asr_final_ms": self._ms(self.eou_sent, self.final),
            # _ms clamps at 0: a final that came before the window closed cost nothing.
            "asr_wait_ms": self._ms(self.turn_end, self.final),
            "retrieval_ms": None if self.retrieval_s is None else round(self.retrieval_s * 1000.0, 1),
            "llm_first_token_ms": self._ms(self.llm_start, self.llm_first_token),
            "tts_first_audio_ms": self._ms(self.tts_start, self.tts_first_audio),
            "voice_to_voice_ms": self._ms(self.speech_end, self.first_audio_sent),
            "transcript_ms": self._ms(self.speech_end, self.final),
            "first_clause_ms": self._ms(self.llm_first_token, self.tts_start),
            "audio_ready_ms": self._ms(self.speech_end, self.tts_first_audio),
            "preempt_lead_ms": self._ms(self.preempt_start, self.turn_end),
            "interim_gap_ms": None if self.interim_gap_ms is None else round(self.interim_gap_ms, 1),
        }

    def metadata(self) -> str:
        return json.dumps({k: v for k, v in self.as_ms().items() if v is not None})

    def observe(self, trace_id: str | None, base_labels: dict[str, str] | None = None) -> None:
        ms = self.as_ms()
        for stage in ("endpoint", "asr_final", "retrieval", "llm_first_token", "tts_first_audio"):
            v = ms.get(f"{stage}_ms")
            if v is not None:
                metrics.observe(metrics.STAGE, v / 1000.0, trace_id, base_labels, stage=stage)
        if ms["voice_to_voice_ms"] is not None:
            metrics.observe(metrics.VOICE_TO_VOICE, ms["voice_to_voice_ms"] / 1000.0, trace_id, base_labels)


def _words(text: str) -> list[str]:
    return [w.strip(".,!?;:\"'").lower() for w in text.split()]


def rewrote(previous: str, text: str) -> bool:
    """``text`` changed a word of ``previous`` other than its last (which may
    have been cut mid-word and grow): "I want" -> "I went to" rewrote,
    "I wan" -> "I want to" did not."""
    before, after = _words(previous)[:-1], _words(text)
    return after[:len(before)] != before
