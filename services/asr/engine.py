"""The Whisper model behind the ASR service: loaded once per process, shared
by every stream, no gRPC. Two kinds of pass:

- interim: one fast greedy decode of the utterance so far (beam 1, no
  timestamps, no conditioning, no VAD). Whisper's encoder is trained on 30 s
  windows and faster-whisper always pads to 30 s, which makes the encoder cost
  the same for 1 s as for 30 s; CTranslate2 also accepts shorter inputs, so
  the interim pass pads only to the audio length + ``interim_pad_s`` (about
  4x faster here, same WER on the test clips). ``interim_trim=False`` falls
  back to faster-whisper's own full-window pass.
- final: faster-whisper's transcribe with the stream's beam size and word
  timestamps.

Interims hold at most ``num_workers - 1`` of the model's workers (a process-
wide slot), so a final always finds a free worker instead of queueing behind
interims of other streams: end-of-utterance latency is what the user waits on.
Passes check a cancel flag between steps, so a cancelled stream stops work.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from services.asr.results import Transcript, Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100      # Whisper's mel hop is 10 ms
WINDOW_FRAMES = 3000         # 30 s, the encoder's full window


MAX_TOKENS_PER_SECOND = 7      # fast speech is ~4 words/s, ~1.3 tokens per word


class Cancelled(Exception):
    """The stream went away while its pass was queued or running."""


class Unreliable(Exception):
    """An interim pass produced looping text; better to skip it than to show it."""


class Transcriber(Protocol):
    """What a stream session needs from a model (the real engine or a fake)."""

    languages: frozenset[str]
    interim_pool: ThreadPoolExecutor
    final_pool: ThreadPoolExecutor

    def transcribe_interim(self, audio: np.ndarray, language: str | None,
                           cancel: threading.Event) -> Transcript: ...

    def transcribe_final(self, audio: np.ndarray, language: str | None, beam_size: int,
                         cancel: threading.Event) -> Transcript: ...


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 2
    num_workers: int = 2
    interim_trim: bool = True
    interim_pad_s: float = 3.0
    final_vad_filter: bool = False
    max_streams: int = 8


class WhisperEngine:
    """One faster-whisper model, thread-safe for concurrent passes."""

    def __init__(self, model_path: str, options: EngineOptions = EngineOptions()) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        self.options = options
        t0 = time.perf_counter()
        self.model = WhisperModel(model_path, device=options.device, compute_type=options.compute_type,
                                  cpu_threads=options.threads, num_workers=options.num_workers)
        self.load_seconds = time.perf_counter() - t0
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = frozenset(_LANGUAGE_CODES) if self.multilingual else frozenset({"en"})
        self._tokenizers: dict[str | None, object] = {}
        self._tok_lock = threading.Lock()
        # Interims may use every worker but one (at least one), finals never wait for a slot.
        self._interim_slots = threading.BoundedSemaphore(max(1, options.num_workers - 1))
        # Own pools, sized for every stream's in-flight pass: the default executor is
        # small (cores + 4) and a final must not queue behind other streams' interims.
        self.interim_pool = ThreadPoolExecutor(options.max_streams, thread_name_prefix="asr-interim")
        self.final_pool = ThreadPoolExecutor(options.max_streams, thread_name_prefix="asr-final")
        log.info("whisper model %s loaded in %.2f s (%s/%s, %d threads x %d workers, %s)",
                 model_path, self.load_seconds, options.device, options.compute_type,
                 options.threads, options.num_workers,
                 "multilingual" if self.multilingual else "English-only")

    # -- passes --------------------------------------------------------------------------

    def transcribe_interim(self, audio: np.ndarray, language: str | None,
                           cancel: threading.Event) -> Transcript:
        if not self.options.interim_trim or language is None or audio.size > 30 * SAMPLE_RATE:
            return self._transcribe(audio, language, beam_size=1, words=False, cancel=cancel,
                                    slot=self._interim_slots)
        with self._interim_slots:
            _check(cancel)
            t0 = time.perf_counter()
            text = self._greedy_trimmed(audio, language, cancel)
            return Transcript(text=text, model_seconds=time.perf_counter() - t0)

    def transcribe_final(self, audio: np.ndarray, language: str | None, beam_size: int,
                         cancel: threading.Event) -> Transcript:
        return self._transcribe(audio, language, beam_size=beam_size, words=True, cancel=cancel)

    def warmup(self) -> None:
        """One pass of each kind, so the first user does not pay for lazy init."""
        tone = (0.1 * np.sin(np.linspace(0, 440 * 2 * np.pi, SAMPLE_RATE))).astype(np.float32)
        never = threading.Event()
        self.transcribe_interim(tone, "en" if "en" in self.languages else None, never)
        self.transcribe_final(tone, "en" if "en" in self.languages else None, 1, never)

    def close(self) -> None:
        self.interim_pool.shutdown(wait=False, cancel_futures=True)
        self.final_pool.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------------

    def _tokenizer(self, language: str | None):
        from faster_whisper.tokenizer import Tokenizer

        with self._tok_lock:
            tok = self._tokenizers.get(language)
            if tok is None:
                tok = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe",
                                language=language if self.multilingual else None)
                self._tokenizers[language] = tok
            return tok

    def _greedy_trimmed(self, audio: np.ndarray, language: str, cancel: threading.Event) -> str:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        tok = self._tokenizer(language)
        feats = self.model.feature_extractor(audio)
        pad = int(self.options.interim_pad_s * FRAMES_PER_SECOND)
        # Whole seconds of input so CTranslate2 sees a few distinct shapes, not one per call.
        target = min(WINDOW_FRAMES, int(math.ceil((feats.shape[-1] + pad) / FRAMES_PER_SECOND))
                     * FRAMES_PER_SECOND)
        encoded = self.model.encode(pad_or_trim(feats, target))
        _check(cancel)
        prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        # Greedy decoding on a short window can loop ("Mr. Chair and Mr. Chair ..."): cap
        # the tokens at what fast speech could need, and drop repetitive text below.
        seconds = audio.size / SAMPLE_RATE
        max_tokens = min(self.model.max_length // 2, int(MAX_TOKENS_PER_SECOND * seconds) + 8)
        result = self.model.model.generate(
            encoded, [prompt], beam_size=1, max_length=len(prompt) + max_tokens,
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(tok, [-1]),
            return_no_speech_prob=True)[0]
        if result.no_speech_prob > 0.6:   # faster-whisper's default no_speech_threshold
            return ""
        ids = [t for t in result.sequences_ids[0] if t < tok.eot]
        text = tok.decode(ids).strip()
        if len(ids) >= max_tokens or _compression_ratio(text) > 2.4:
            raise Unreliable(text)
        return text

    def _transcribe(self, audio: np.ndarray, language: str | None, *, beam_size: int, words: bool,
                    cancel: threading.Event, slot: threading.BoundedSemaphore | None = None) -> Transcript:
        if slot is not None:
            slot.acquire()
        try:
            _check(cancel)
            t0 = time.perf_counter()
            segments, _info = self.model.transcribe(
                audio, language=language, beam_size=beam_size, word_timestamps=words,
                without_timestamps=not words, condition_on_previous_text=False,
                vad_filter=self.options.final_vad_filter and words)
            texts: list[str] = []
            found: list[Word] = []
            for seg in segments:   # lazy: each segment is decoded on iteration
                _check(cancel)
                texts.append(seg.text.strip())
                for w in seg.words or ():
                    word = Word(word=w.word.strip(), start_ms=int(round(w.start * 1000)),
                                end_ms=int(round(w.end * 1000)), probability=float(w.probability))
                    if found and w.word[:1] not in " " and not w.word[:1].isalnum():
                        # A piece like "-disposed" continues the previous word ("ill"):
                        # one word per word of the text. (Languages without spaces
                        # come as one character per piece and are left alone.)
                        prev = found[-1]
                        word = Word(prev.word + word.word, prev.start_ms, word.end_ms,
                                    min(prev.probability, word.probability))
                        found[-1] = word
                    else:
                        found.append(word)
            return Transcript(text=" ".join(t for t in texts if t), words=tuple(found),
                              model_seconds=time.perf_counter() - t0)
        finally:
            if slot is not None:
                slot.release()


def _compression_ratio(text: str) -> float:
    """Whisper's own hallucination test: looping text compresses too well."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()
