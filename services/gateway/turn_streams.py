"""What turn-taking keeps about its two long-lived streams (turns.py).

The VAD and ASR streams of a session outlive its turns and are reopened when
their service restarts (streams.StreamKeeper). This module holds the parameters
they open with and the bookkeeping that maps the ring buffer's timeline onto
them: where the current VAD stream's time 0 is and how far the ring has been
sent to it, and, for the ASR stream, which segment each utterance index is and
how far the ring has been sent. No decisions about turns are made here."""
from __future__ import annotations

from services.gateway.backends.types import AsrParams, VadParams
from services.gateway.turn_state import Segment


def vad_params(td, settings) -> VadParams:
    """The session's VAD stream: the client's turn_detection where set, else the settings."""
    return VadParams(
        threshold=td.threshold if td else settings.vad_threshold, min_speech_ms=settings.vad_min_speech_ms,
        min_silence_ms=settings.vad_min_silence_ms,
        prefix_padding_ms=td.prefix_padding_ms if td else settings.prefix_padding_ms,
        pause_events=settings.asr_flush_on_pause, end_of_turn=td is not None and td.type == "semantic_vad")


def asr_params(settings) -> AsrParams:
    return AsrParams(settings.asr_language, settings.asr_interim_interval_ms, settings.asr_beam_size,
                     omit_words=True)


class VadFeed:
    """The ring's timeline on the current VAD stream: whole frames only."""

    def __init__(self, ring) -> None:
        self.ring = ring
        self.base_ms = 0.0     # ring time of the stream's first sample
        self.sent_to = 0.0

    def restart(self) -> None:
        # The new stream's first sample is the next one we send.
        self.base_ms = self.sent_to = self.ring.end_ms

    def due(self, chunk_ms: int) -> bytes:
        """The whole chunks received since the last send (b"" when less than one)."""
        due = self.ring.end_ms - self.sent_to
        if due < chunk_ms:
            return b""
        upto = self.sent_to + due // chunk_ms * chunk_ms
        pcm, self.sent_to = self.ring.slice(self.sent_to, upto), upto
        return pcm


class Utterances:
    """The ASR stream's utterances: the segment each index is, how far the ring was sent."""

    def __init__(self, ring) -> None:
        self.ring = ring
        self.next_index = 0
        self.segments: dict[int, Segment] = {}
        self.sent_to = 0.0

    def add(self, seg: Segment) -> None:
        self.segments[self.next_index] = seg
        self.next_index += 1

    def get(self, index: int) -> Segment | None:
        return self.segments.get(index)

    def settle(self, index: int) -> None:
        """Its final came: later results for that index are not expected."""
        self.segments.pop(index, None)

    def unsent(self) -> bytes:
        """Everything received since the last send, marked sent."""
        pcm = self.ring.slice(self.sent_to)
        self.sent_to = self.ring.end_ms
        return pcm

    def restart(self, open_seg: Segment | None) -> None:
        """A new ASR stream: the open segment, if any, becomes its utterance 0."""
        self.next_index = 0
        self.segments.clear()
        if open_seg is None:
            return
        self.add(open_seg)
        if open_seg.done.is_set() and (open_seg.final is not None or open_seg.end_ms is not None):
            self.sent_to = self.ring.end_ms    # settled: nothing waits for its text
            return
        # A stream lost while the user spoke (a restarted service, a reset
        # connection), or speech that began while the ASR was away: the new
        # stream hears the utterance from its first sample the ring still
        # holds (6 s), so the words said before are not lost.
        open_seg.done.clear()
        start = max(open_seg.padded_ms, self.ring.start_ms)
        open_seg.padded_ms, open_seg.interim_end_ms = start, None
        open_seg.flush_end_ms = open_seg.flush_at = None   # a flush of the lost stream cannot be adopted
        self.sent_to = start

    def lost(self, open_seg: Segment | None) -> None:
        """The ASR stream is gone: ended segments keep their last interim as final."""
        for seg in self.segments.values():
            if seg is open_seg:
                continue                  # still being spoken: heard again when the stream is back
            seg.end_without_final()       # best effort: the last interim
        self.segments.clear()
