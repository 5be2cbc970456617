"""A trimmed decode that loops is cut at its token cap and flagged; a final
keeps the loop's first reading when it covers the speech, and otherwise is
the full window's text (real Whisper base, no gRPC).

The audio is what the gateway sends after a pause inside a sentence: the
rest of clip 0880 ("not an ill-disposed young man") from the word after
"He was", behind 256 ms of the pause's silence. On the trimmed window
Whisper reads it and then reads it again until it is stopped ("Not an
ill-disposed young man. Not an ill-disposed young man. ..."), as it does for
7 % of the segments of bench_turn_model's pause clips (docs/benchmarks.md).
Before 2026-12-07 such a final decoded 112 tokens (~0.9 s) before its redo,
and an interim's cap, half of what it meant (``max_length``), could cut the
loop early enough to pass for text. Until 2026-12-07 (fourth session) every
such final was then redone on the full window (~0.7 s more on two threads)."""
from __future__ import annotations

import threading
import types

import numpy as np
import pytest

from common.audio import pcm16_to_float, read_wav
from services.asr import models
from services.asr.engine import EngineOptions, Unreliable, WhisperEngine
from services.asr.windows import max_length, token_cap
from tests.procs import clips

CUT_MS, END_MS, PAUSE_MS = 540, 2984, 256   # the cut after "He was" (bench_turn_model), the speech end


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    e = WhisperEngine(str(models.resolve("base")), EngineOptions(threads=2, num_workers=2, interim_nice=0))
    yield e
    e.close()


@pytest.fixture(scope="module")
def after_pause() -> np.ndarray:
    wav = next(w for w, _ in clips() if w.stem.endswith("0880"))
    pcm, rate = read_wav(wav)
    assert rate == 16000
    audio = pcm16_to_float(pcm)[CUT_MS * 16:END_MS * 16]
    return np.concatenate([np.zeros(PAUSE_MS * 16, np.float32), audio])


def _generate(engine: WhisperEngine, audio: np.ndarray, prompt: list[int], new_tokens: int) -> list[int]:
    m = engine.model
    encoded, _ = engine._encode_trimmed(audio, engine.options.final_pad_s, m)
    r = m.model.generate(encoded, [prompt], beam_size=1,
                         max_length=max_length(len(prompt), new_tokens, m.max_length))[0]
    return r.sequences_ids[0]


@pytest.mark.parametrize("new_tokens", [3, 12, 30])
def test_max_length_lets_the_decoder_take_the_tokens_asked_for(engine, after_pause, new_tokens) -> None:
    """Pins CTranslate2's reading of ``max_length`` (a loop never stops by
    itself, so the decode runs to the limit): exactly ``new_tokens`` tokens,
    with the plain prompt and with a longer one (previous text)."""
    tok = engine._tokenizer("en")
    plain = list(tok.sot_sequence) + [tok.no_timestamps]
    longer = [tok.sot_prev] + tok.encode(" He was") + plain
    for prompt in (plain, longer):
        assert len(_generate(engine, after_pause, prompt, new_tokens)) == new_tokens


def test_a_looping_final_keeps_its_first_reading_without_the_full_window(engine, after_pause,
                                                                          monkeypatch) -> None:
    """At beam 1 (what voice turns ask for) the decode runs to its cap (a
    couple of readings, not 112 tokens' worth); the first reading ends where
    the speech does, so it is the final."""
    beam = 1
    never = threading.Event()
    cap = token_cap(after_pause.size / 16000, "en")
    tok = engine._tokenizer("en")
    seen: list[str] = []
    real_align = engine._align

    def align(model, tok_, ids, *rest):
        seen.append(tok.decode(ids))
        return real_align(model, tok_, ids, *rest)
    monkeypatch.setattr(engine, "_align", align)
    monkeypatch.setattr(engine, "_transcribe", lambda *a, **k: pytest.fail("redone on the full window"))
    final = engine.transcribe_final(after_pause, "en", beam, never, words=True, redo=False)
    assert final.text.lower().count("young man") == 1 and final.text.lower().startswith("not an ill")
    assert final.words and final.words[-1].word.lower().startswith("man")
    assert seen and all(s.lower().count("young man") == 1 for s in seen)
    assert len(tok.encode(" " + final.text)) < cap


def test_a_decode_that_stops_by_itself_within_its_cap_goes_to_the_full_window(engine, after_pause,
                                                                            monkeypatch) -> None:
    """Two readings that end by themselves within the cap fit the audio, so the
    rule takes no first reading and the full window decides, as for every
    unreliable pass before the rule. Beam 5 decodes this speech so on some
    CPUs (20 of 26 tokens, the CI's in 2026-12-07) and loops to the cap on
    others (int8 kernels differ: a 2026-12-07 host with AVX512-VNNI), so the
    decode is given: the real model's, with its tokens replaced by two
    readings and an end."""
    tok = engine._tokenizer("en", engine.model)
    two = tok.encode(" Not an ill-disposed young man. Not an ill-disposed young man.")

    class TwoReadings:
        def __init__(self, model) -> None:
            self._model = model

        def __getattr__(self, name: str):
            return getattr(self._model, name)

        def generate(self, *args, **kwargs):
            r = self._model.generate(*args, **kwargs)[0]
            return [types.SimpleNamespace(sequences_ids=[two + [tok.eot]], scores=[-0.2],
                                          no_speech_prob=r.no_speech_prob)]

    never = threading.Event()
    with monkeypatch.context() as m:
        m.setattr(engine.model, "model", TwoReadings(engine.model.model))
        with pytest.raises(Unreliable):
            engine.transcribe_final(after_pause, "en", 5, never, words=False, redo=False)
    final = engine.transcribe_final(after_pause, "en", 5, never, words=False)
    assert final.text.lower().count("young man") == 1


def test_a_sentence_really_said_twice_is_not_cut(engine, after_pause) -> None:
    """The same speech said twice reads as a repetition too, but its first
    reading ends halfway through the audio: the full window decides, and both
    readings stay."""
    twice = np.concatenate([after_pause, np.zeros(4800, np.float32), after_pause[PAUSE_MS * 16:]])
    never = threading.Event()
    with pytest.raises(Unreliable):
        engine.transcribe_final(twice, "en", 1, never, words=False, redo=False)
    final = engine.transcribe_final(twice, "en", 1, never, words=False)
    assert final.text.lower().count("young man") == 2


def test_languages_that_take_more_tokens_get_a_higher_cap() -> None:
    """One ~4 s sentence took 18 tokens in English and 80 in Hindi: a cap
    made for English would send every such final to the full window."""
    assert token_cap(4.0, "en") == 36
    assert token_cap(4.0, "hi") > 80 and token_cap(4.0, None) == token_cap(4.0, "hi")


def test_a_looping_interim_is_skipped_not_shown_cut(engine, after_pause) -> None:
    with pytest.raises(Unreliable):
        engine.transcribe_interim(after_pause, "en", threading.Event())


def test_a_short_phrase_really_said_twice_is_not_taken_for_a_loop(engine, caplog) -> None:
    """"to do", said twice 300 ms apart, decodes as "Let you... Let you...":
    flagged as a repetition, and its first reading even ends within the gap
    of the audio's end (0.595 s). But the decode stopped well before its cap
    (6 of 17 tokens): two readings fit the audio, so nothing says the second
    was not said. Only a decode at its cap is rescued (a review's finding:
    this phrase was cut to one reading before that rule)."""
    from clients.phrases import load_phrases
    audio = next(a for p, a in load_phrases() if p.text == "to do")
    gap = np.zeros(4800, np.float32)
    twice = np.concatenate([np.zeros(4000, np.float32), audio, gap, audio, np.zeros(2000, np.float32)])
    with caplog.at_level("INFO", logger="services.asr.engine"):
        engine.transcribe_final(twice, "en", 1, threading.Event(), words=False)
    assert not [r for r in caplog.records if "first reading" in r.getMessage()]
