"""The Whisper model behind the ASR service: loaded once per process, shared
by every stream, no gRPC. Two kinds of pass:

- interim: one fast greedy decode of the utterance so far (beam 1, no
  timestamps, no conditioning, no VAD), no word timings.
- final: beam search with the stream's beam size, then word timings from
  Whisper's cross-attention alignment (faster-whisper's own code).

Whisper's encoder is trained on 30 s windows and faster-whisper always pads
to 30 s, so encoding 1 s costs as much as 30 s (about 0.4 s on 2 CPU cores).
CTranslate2 also takes shorter inputs, so both passes encode only the audio
plus a few seconds of padding (``*_pad_s``): 3-10x less encoder time for
short utterances, the same WER and word times on the test clips. A final
whose decode looks unreliable (looping or low log-probability) is redone
with faster-whisper's full-window transcribe at temperature 0 (its random
temperature fallback made a redo's text differ run to run);
``interim_trim``/``final_trim`` off always use faster-whisper's transcribe
as it comes, fallback included.

On short phrases the trimmed window is less accurate than the 30 s one
(bench/bench_asr_decoding.py, docs/benchmarks.md), and it fails in one way
the 30 s window never did there: the decoder, having read the audio, reads
it again ("have been have been", "for them, for them, for"; issue #13).
Whisper's own loop test, the compression ratio, cannot see it: "Seven of
clubs Seven of clubs" compresses 29 to 26 bytes (ratio 1.1, threshold 2.4).
So a trimmed pass whose text says a run of words twice back to back counts
as unreliable too: a final is redone on the full window, an interim is
skipped. One exception for finals: a loop whose text is one sentence read
again and again ("Power to do for them. Power to do for them. Power to")
keeps its first reading when the decode ran to its token cap (more tokens
than the audio can hold) with a good log-probability and that reading's last
word ends at the audio's end; a sentence really said twice ends halfway and,
like every other unreliable pass, goes to the full window.

Scheduling is not done here: which stream's interim runs, how many at once,
and that none starts while a final runs is interims.py's job (process-wide,
on the event loop). Passes check a cancel flag between steps, so a cancelled
stream stops its work. With ``interim_nice`` > 0 (CPU), interims run on a
second copy of the model (``interim_workers`` workers) whose worker threads
have that lower CPU priority: an interim still decoding when the user stops
speaking (a pass cannot be interrupted) then yields the cores to the final,
the LLM and the speech synthesis instead of sharing them. That copy may be a
smaller model (``interim_model_path``, e.g. tiny.en): interims then cost less
CPU and keep up better under load, at their own accuracy (finals are always
the main model's); it has its own tokenizer (an English-only model's token
ids differ from a multilingual one's).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, Sequence

import numpy as np

from common.priority import load_niced
from services.asr.batching import InterimItem, window_groups
from services.asr.results import Transcript, Word
from services.asr.text_checks import first_reading, join_pieces, looks_looped, prefix_ids
from services.asr.windows import SAMPLE_RATE, WINDOW_FRAMES, max_length, token_cap, window_frames

log = logging.getLogger(__name__)

# A capped loop's first reading is kept when its last word ends this close to the audio's
# end (bench_turn_model's loops: 0.10-0.25 s; a sentence said twice: 3.5-6.7 s).
FIRST_READING_MAX_GAP_S = 0.6


class Cancelled(Exception):
    """The stream went away while its pass was queued or running."""


class Unreliable(Exception):
    """A trimmed pass's text looks wrong (looping, or a low log-probability): an
    interim is skipped, a final redone on the full window (or raised, redo=False)."""


class Transcriber(Protocol):
    """What a stream session needs from a model (the real engine or a fake)."""

    languages: frozenset[str]
    interim_pool: ThreadPoolExecutor
    final_pool: ThreadPoolExecutor

    def transcribe_interim(self, audio: np.ndarray, language: str | None,
                           cancel: threading.Event) -> Transcript: ...

    def transcribe_final(self, audio: np.ndarray, language: str | None, beam_size: int,
                         cancel: threading.Event, words: bool = True,
                         redo: bool = True, background: bool = False, trim: bool = True) -> Transcript: ...


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 2
    num_workers: int = 2
    interim_workers: int = 1    # interim passes at once (interims.py grants no more than this)
    interim_trim: bool = True
    interim_pad_s: float = 3.0
    final_trim: bool = True
    final_pad_s: float = 3.0
    final_vad_filter: bool = False
    max_streams: int = 8
    interim_nice: int = 19      # nice steps below the service for interim passes (0 = share the final passes' model)
    interim_model_path: str = ""   # a smaller Whisper for interims ('' = a copy of the finals' model); needs nice > 0


class WhisperEngine:
    """One faster-whisper model, thread-safe for concurrent passes."""

    def __init__(self, model_path: str, options: EngineOptions = EngineOptions()) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        self.options = options
        t0 = time.perf_counter()
        self.model = WhisperModel(model_path, device=options.device, compute_type=options.compute_type,
                                  cpu_threads=options.threads, num_workers=options.num_workers)
        self.interim_model = self.model
        interim_path = options.interim_model_path or model_path
        if options.interim_nice > 0 and options.device == "cpu":
            self.interim_model = load_niced(options.interim_nice, lambda: WhisperModel(
                interim_path, device=options.device, compute_type=options.compute_type,
                cpu_threads=options.threads, num_workers=max(1, options.interim_workers)),
                name="asr-interim-load")
        elif options.interim_model_path:
            self.interim_model = WhisperModel(interim_path, device=options.device,
                                              compute_type=options.compute_type, cpu_threads=options.threads,
                                              num_workers=max(1, options.interim_workers))
        # A BACKGROUND stream's finals (nobody waits: a release probe) run on the
        # interims' low-priority copy when it is the same model, never on a smaller one.
        self.background_model = self.interim_model if interim_path == model_path else self.model
        self.load_seconds = time.perf_counter() - t0
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = frozenset(_LANGUAGE_CODES) if self.multilingual else frozenset({"en"})
        self._tokenizers: dict[tuple[int, str | None], object] = {}
        self._tok_lock = threading.Lock()
        # Own pools, sized for every stream's in-flight pass: the default executor is
        # small (cores + 4) and a final must not queue behind other streams' interims.
        self.interim_pool = ThreadPoolExecutor(options.max_streams, thread_name_prefix="asr-interim")
        self.final_pool = ThreadPoolExecutor(options.max_streams, thread_name_prefix="asr-final")
        log.info("whisper model %s loaded in %.2f s (%s/%s, %d threads x %d workers; interims: "
                 "%d at once, %s; %s)", model_path, self.load_seconds, options.device,
                 options.compute_type, options.threads, options.num_workers, options.interim_workers,
                 ("on the finals' model" if self.interim_model is self.model else
                  f"{'own copy' if interim_path == model_path else interim_path}"
                  + (f" at nice {options.interim_nice}" if options.device == "cpu" else "")),
                 "multilingual" if self.multilingual else "English-only")

    # -- passes --------------------------------------------------------------------------

    def transcribe_interim(self, audio: np.ndarray, language: str | None,
                           cancel: threading.Event) -> Transcript:
        if not self._trimmed_interim(audio, language):
            return self._transcribe(audio, language, beam_size=1, words=False, cancel=cancel)
        _check(cancel)
        t0 = time.perf_counter()
        text = self._greedy_trimmed([(audio, language, cancel)])[0]
        if isinstance(text, Exception):
            raise text
        return Transcript(text=text, model_seconds=time.perf_counter() - t0)

    def transcribe_interims(self, items: Sequence[InterimItem]) -> list[Transcript | Exception]:
        """Interims of several streams (batching.py): the trimmed ones decoded
        as one batch, each its own result or exception. ``model_seconds`` of a
        batched result is the whole batch's time (what each stream waited)."""
        out: list[Transcript | Exception | None] = [None] * len(items)
        batch: list[int] = []
        for i, it in enumerate(items):
            if it.cancel.is_set():
                out[i] = Cancelled()
            elif len(items) > 1 and self._trimmed_interim(it.audio, it.language):
                batch.append(i)
            else:
                try:
                    out[i] = self.transcribe_interim(it.audio, it.language, it.cancel)
                except Exception as exc:   # this stream's failure, not the others'
                    out[i] = exc
        for group in window_groups(batch, [it.audio.size for it in items], self.options.interim_pad_s):
            t0 = time.perf_counter()
            try:
                texts = self._greedy_trimmed([(items[i].audio, items[i].language, items[i].cancel)
                                              for i in group])
            except Exception as exc:   # this group's failure (e.g. out of memory): not the other groups'
                log.warning("batched interim pass of %d streams failed: %r", len(group), exc)
                texts = [exc] * len(group)
            seconds = time.perf_counter() - t0
            for i, text in zip(group, texts):
                out[i] = text if isinstance(text, Exception) else Transcript(text, model_seconds=seconds)
        return [r if r is not None else Cancelled() for r in out]

    def _trimmed_interim(self, audio: np.ndarray, language: str | None) -> bool:
        # (an English-only interim model cannot hear other languages: the finals' model does)
        return (self.options.interim_trim and language is not None and audio.size <= 30 * SAMPLE_RATE
                and (language == "en" or bool(self.interim_model.model.is_multilingual)))

    def transcribe_final(self, audio: np.ndarray, language: str | None, beam_size: int,
                         cancel: threading.Event, words: bool = True,
                         redo: bool = True, background: bool = False, trim: bool = True) -> Transcript:
        """``words``: word timings (a second, alignment pass over the text).
        ``background``: on the low-priority copy (``background_model``).
        ``redo``: an unreliable trimmed pass is redone on the full 30 s window;
        without it, Unreliable is raised (a flush, whose text is only
        provisional, should not spend a full-window pass on the final queue).
        ``trim`` False: straight to the full window, for audio whose trimmed
        pass already proved unreliable (a flush of the same speech: the
        decode is deterministic, it would loop again)."""
        model = self.background_model if background else self.model
        spent = 0.0
        if trim and self.options.final_trim and language is not None and audio.size <= 29 * SAMPLE_RATE \
                and not self.options.final_vad_filter:
            _check(cancel)
            t0 = time.perf_counter()
            try:
                text, found = self._final_trimmed(audio, language, beam_size, cancel, words, model)
                return Transcript(text, found, time.perf_counter() - t0)
            except Unreliable:
                if not redo:
                    raise
                log.info("trimmed final pass unreliable: redoing it on the full 30 s window")
                trim, spent = False, time.perf_counter() - t0
        if not trim:
            # A redo, here or asked for: at temperature 0 only. The random fallback
            # faster-whisper adds when that pass fails its thresholds (short phrases
            # often do) gave a different text on each run, once a loop.
            tr = self._transcribe(audio, language, beam_size=beam_size, words=words, cancel=cancel,
                                  temperature=0.0, model=model)
            return dataclasses.replace(tr, model_seconds=tr.model_seconds + spent)   # the trimmed try too
        return self._transcribe(audio, language, beam_size=beam_size, words=words, cancel=cancel, model=model)

    def warmup(self) -> None:
        """One pass of each kind, so the first user does not pay for lazy init."""
        tone = (0.1 * np.sin(np.linspace(0, 440 * 2 * np.pi, SAMPLE_RATE))).astype(np.float32)
        never = threading.Event()
        language = "en" if "en" in self.languages else None
        self.transcribe_interim(tone, language, never)
        self.transcribe_final(tone, language, 1, never)

    def close(self) -> None:
        self.interim_pool.shutdown(wait=False, cancel_futures=True)
        self.final_pool.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------------

    def _tokenizer(self, language: str | None, model=None):
        """The tokenizer of ``model`` (default: the finals' model) for ``language``."""
        from faster_whisper.tokenizer import Tokenizer
        model = model or self.model
        multilingual = bool(model.model.is_multilingual)
        key = (id(model), language)
        with self._tok_lock:
            tok = self._tokenizers.get(key)
            if tok is None:
                tok = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                                language=language if multilingual else None)
                self._tokenizers[key] = tok
            return tok

    def _greedy_trimmed(self, pieces: Sequence[tuple[np.ndarray, str | None, threading.Event]]
                        ) -> list[str | Exception]:
        """Greedy decodes of each (audio, language, cancel) on the trimmed encoder,
        as one batch: every window is padded to the longest one's (more silence
        after the shorter utterances), and CTranslate2 decodes them side by side.
        Looping text comes back as Unreliable for that piece alone; a piece whose
        stream went away while the encoder ran comes back Cancelled (and a lone
        piece is then not decoded at all)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.interim_model
        toks = [self._tokenizer(language, model) for _, language, _ in pieces]
        feats = [model.feature_extractor(audio) for audio, _, _ in pieces]
        target = max(self._window(f, self.options.interim_pad_s) for f in feats)
        encoded = model.encode(np.stack([pad_or_trim(f, target) for f in feats]))
        cancelled = [cancel.is_set() for _, _, cancel in pieces]
        if all(cancelled):   # every stream went away while the encoder ran: no decode
            return [Cancelled() for _ in pieces]
        prompts = [list(tok.sot_sequence) + [tok.no_timestamps] for tok in toks]
        # Greedy decoding on a short window can loop ("Mr. Chair and Mr. Chair ..."): cap
        # the tokens at what fast speech could need, and drop repetitive text below.
        caps = [min(model.max_length // 2, token_cap(audio.size / SAMPLE_RATE, language))
                for audio, language, _ in pieces]
        results = model.model.generate(
            encoded, prompts, beam_size=1,
            max_length=max(max_length(len(p), c, model.max_length) for p, c in zip(prompts, caps)),
            suppress_blank=True, suppress_tokens=get_suppressed_tokens(toks[0], [-1]),
            return_no_speech_prob=True)
        out: list[str | Exception] = []
        for result, tok, cap, gone in zip(results, toks, caps, cancelled):
            if gone:   # (decoded with the others: a batch's rows cannot be dropped midway)
                out.append(Cancelled())
                continue
            if result.no_speech_prob > 0.6:   # faster-whisper's default no_speech_threshold
                out.append("")
                continue
            ids = [t for t in result.sequences_ids[0] if t < tok.eot]
            text = tok.decode(ids).strip()
            unreliable = len(ids) >= cap or looks_looped(text)
            out.append(Unreliable(text) if unreliable else text)
        return out

    @staticmethod
    def _window(feats: np.ndarray, pad_s: float) -> int:
        return window_frames(min(feats.shape[-1] - 1, WINDOW_FRAMES), pad_s)

    def _encode_trimmed(self, audio: np.ndarray, pad_s: float, model=None):
        """(encoder output, content frames) for the audio plus ``pad_s`` of padding."""
        from faster_whisper.audio import pad_or_trim

        model = model or self.model
        feats = model.feature_extractor(audio)
        content = min(feats.shape[-1] - 1, WINDOW_FRAMES)
        return model.encode(pad_or_trim(feats, self._window(feats, pad_s))), content

    def _final_trimmed(self, audio: np.ndarray, language: str, beam_size: int,
                       cancel: threading.Event, want_words: bool = True,
                       model=None) -> tuple[str, tuple[Word, ...]]:
        """Beam search on the trimmed encoder, then word timings (``_align``). Raises
        Unreliable where faster-whisper would fall back to sampling."""
        from faster_whisper.transcribe import get_suppressed_tokens

        model = model or self.model
        tok = self._tokenizer(language, model)
        encoded, content = self._encode_trimmed(audio, self.options.final_pad_s, model)
        _check(cancel)
        prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        # A loop runs to the cap: capped at what the audio could hold, it costs
        # ~0.15 s instead of ~0.9 s of decoding (224 tokens) before the redo.
        cap = min(model.max_length // 2, token_cap(audio.size / SAMPLE_RATE, language))
        result = model.model.generate(
            encoded, [prompt], beam_size=beam_size, patience=1.0, length_penalty=1.0,
            max_length=max_length(len(prompt), cap, model.max_length), return_scores=True,
            return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tok, [-1]))[0]
        ids = [t for t in result.sequences_ids[0] if t < tok.eot]
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1)
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:   # faster-whisper's silence rule
            return "", ()
        text = tok.decode(ids).strip()
        seconds = audio.size / SAMPLE_RATE
        if avg_logprob < -1.0 or len(ids) >= cap or looks_looped(text):
            # A confident decode that ran to the cap (more tokens than the audio
            # can hold) by reading one sentence again and again: its first
            # reading is the text if it ends where the audio does (a sentence
            # really said twice ends halfway), without the full window's ~1 s.
            first = first_reading(text) if len(ids) >= cap and avg_logprob >= -1.0 \
                and result.no_speech_prob <= 0.6 else None
            kept = prefix_ids(tok.decode, ids, first) if first and not looks_looped(first) else None
            _check(cancel)
            words = self._align(model, tok, kept, encoded, content, seconds) if kept else []
            if not words or seconds - words[-1].end_ms / 1000 > FIRST_READING_MAX_GAP_S:
                raise Unreliable(text)
            log.info("trimmed final read its speech again: kept the first reading (%d of %d tokens)",
                     len(kept or ()), len(ids))
            return tok.decode(kept).strip(), join_pieces(words) if want_words else ()
        if not ids or not want_words:
            return text if ids else "", ()
        _check(cancel)
        return text, join_pieces(self._align(model, tok, ids, encoded, content, seconds))

    @staticmethod
    def _align(model, tok, ids: list[int], encoded, content: int, seconds: float) -> list[Word]:
        """Word timings of ``ids`` from Whisper's cross-attention (faster-whisper's own code)."""
        segments: list[list[dict[str, Any]]] = [[{"tokens": ids, "seek": 0, "start": 0.0, "end": seconds}]]
        model.add_word_timestamps(segments, tok, encoded, content, "\"'“¿([{-",
                                  "\"'.。,，!！?？:：”)]}、", 0.0)
        return [Word(word=w["word"], start_ms=int(round(w["start"] * 1000)), end_ms=int(round(w["end"] * 1000)),
                     probability=float(w["probability"])) for w in segments[0][0].get("words", ())]

    def _transcribe(self, audio: np.ndarray, language: str | None, *, beam_size: int, words: bool,
                    cancel: threading.Event,
                    temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                    model=None) -> Transcript:
        _check(cancel)
        t0 = time.perf_counter()
        segments, _info = (model or self.model).transcribe(
            audio, language=language, beam_size=beam_size, word_timestamps=words, temperature=temperature,
            without_timestamps=not words, condition_on_previous_text=False,
            vad_filter=self.options.final_vad_filter and words)
        texts: list[str] = []
        found: list[Word] = []
        for seg in segments:   # lazy: each segment is decoded on iteration
            _check(cancel)
            texts.append(seg.text.strip())
            for w in seg.words or ():
                found.append(Word(word=w.word, start_ms=int(round(w.start * 1000)),
                                  end_ms=int(round(w.end * 1000)), probability=float(w.probability)))
        return Transcript(text=" ".join(t for t in texts if t), words=join_pieces(found),
                          model_seconds=time.perf_counter() - t0)


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()
