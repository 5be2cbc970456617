"""Invariants of the Whisper engine on a short real clip (no gRPC): the final
pass transcribes real speech with word timings that are ordered and inside
the audio; the fast interim pass hears the same words; a set cancel flag
stops a pass before it runs; English-only models accept only 'en'. And the
model preparation joins the two Whisper-base parts once, atomically."""
from __future__ import annotations

import re
import threading

import jiwer
import numpy as np
import pytest

from common.audio import pcm16_to_float, read_wav
from services.asr import models
from services.asr.engine import Cancelled, EngineOptions, WhisperEngine
from tests.procs import clips


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    e = WhisperEngine(str(models.resolve("base")), EngineOptions(threads=2, num_workers=2))
    yield e
    e.close()


@pytest.fixture(scope="module")
def short_clip() -> tuple[np.ndarray, str]:
    wav, ref = min(clips(), key=lambda c: c[0].stat().st_size)   # the ~3 s one
    pcm, rate = read_wav(wav)
    assert rate == 16000
    return pcm16_to_float(pcm), ref


def test_final_pass_transcribes_real_speech_with_ordered_word_timings(engine, short_clip) -> None:
    audio, ref = short_clip
    tr = engine.transcribe_final(audio, "en", 5, threading.Event())
    assert jiwer.wer(norm(ref), norm(tr.text)) <= 0.15
    assert len(tr.words) == len(tr.text.split())
    duration_ms = audio.size * 1000 // 16000
    starts = [w.start_ms for w in tr.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_ms <= w.end_ms <= duration_ms + 100 for w in tr.words)
    assert all(0.0 < w.probability <= 1.0 for w in tr.words)
    assert tr.model_seconds > 0


def test_interim_pass_hears_the_same_words(engine, short_clip) -> None:
    audio, ref = short_clip
    tr = engine.transcribe_interim(audio, "en", threading.Event())
    assert jiwer.wer(norm(ref), norm(tr.text)) <= 0.25
    assert tr.words == ()       # interims carry no word timings


def test_full_window_passes_agree_with_the_trimmed_ones(engine, short_clip) -> None:
    audio, ref = short_clip
    full = WhisperEngine(str(models.resolve("base")),
                         EngineOptions(interim_trim=False, final_trim=False, num_workers=1))
    try:
        interim = full.transcribe_interim(audio, "en", threading.Event())
        final = full.transcribe_final(audio, "en", 5, threading.Event())
    finally:
        full.close()
    assert jiwer.wer(norm(ref), norm(interim.text)) <= 0.25
    trimmed = engine.transcribe_final(audio, "en", 5, threading.Event())
    assert [w.word for w in final.words] == [w.word for w in trimmed.words]
    # Word times from the short encoder window stay within 100 ms of the 30 s window's.
    assert all(abs(a.start_ms - b.start_ms) <= 100 and abs(a.end_ms - b.end_ms) <= 100
               for a, b in zip(final.words, trimmed.words))


def test_a_cancelled_stream_runs_no_pass(engine, short_clip) -> None:
    audio, _ = short_clip
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.transcribe_final(audio, "en", 5, cancel)
    with pytest.raises(Cancelled):
        engine.transcribe_interim(audio, "en", cancel)


def test_language_lists_follow_the_model(engine) -> None:
    assert {"en", "de", "fr"} <= engine.languages
    tiny = WhisperEngine(str(models.resolve("tiny.en")), EngineOptions(num_workers=1))
    try:
        assert tiny.languages == frozenset({"en"})
    finally:
        tiny.close()


def test_prepare_joins_the_parts_once_and_atomically(tmp_path) -> None:
    target = tmp_path / "whisper-base"
    out = models.prepare_base(target)
    assert out == target and models.is_complete(target)
    parts, _ = models._base_parts()
    assert (target / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    with open(target / "model.bin", "rb") as joined, open(parts[0], "rb") as first:
        assert joined.read(4096) == first.read(4096)
    mtime = (target / "model.bin").stat().st_mtime_ns
    models.prepare_base(target)                       # present and complete: skipped
    assert (target / "model.bin").stat().st_mtime_ns == mtime
    (target / ".complete").unlink()                   # a half-finished join is redone
    models.prepare_base(target)
    assert models.is_complete(target)
    assert [p.name for p in tmp_path.iterdir()] == ["whisper-base"]   # no temp dirs left


def test_model_setting_rejects_a_directory_without_a_model(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="CTranslate2 Whisper"):
        models.resolve(str(tmp_path))


def test_word_pieces_join_into_the_words_of_the_text() -> None:
    from services.asr.engine import _join_pieces
    from services.asr.results import Word

    raw = [Word(" He", 0, 300, 0.9), Word(" ill", 300, 500, 0.8), Word("-disposed", 500, 900, 0.7),
           Word(" man.", 900, 1200, 0.95)]
    assert _join_pieces(raw) == (Word("He", 0, 300, 0.9), Word("ill-disposed", 300, 900, 0.7),
                                 Word("man.", 900, 1200, 0.95))
    # Without spaces (e.g. Chinese, one character per piece) nothing is joined.
    cjk = [Word("你", 0, 100, 0.9), Word("好", 100, 200, 0.9)]
    assert [w.word for w in _join_pieces(cjk)] == ["你", "好"]
