"""The ASR evaluation's scoring on synthetic results (no model): utterances
land in the right length, rate and noise slices; corpus WER per slice with an
interval that holds it; a clear regression on one slice is found and ranked
first, no difference is not called one, a slice too small is never called a
regression; pink noise is mixed at the SNR asked for; release specs parse
or say what is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from eval.asr.run import Release
from eval.asr.slices import Result, compare, score
from eval.asr.speech import Utterance, pink, with_noise


def res(name: str, seconds: float, ref: str, hyp: str, noise: str = "clean") -> Result:
    return Result(name, seconds, noise, ref, hyp)


def test_slices_by_length_rate_and_noise():
    r = res("a", 0.8, "seven of clubs", "seven of clubs", "snr 10 dB")   # 3.75 words/s
    assert r.slices() == [("all", "all"), ("length", "< 1 s"), ("rate", "fast (> 3.2 w/s)"),
                          ("noise", "snr 10 dB")]
    assert res("b", 5.0, "one two three four five six seven eight", "").slices()[1:3] == [
        ("length", "4 s +"), ("rate", "slow (< 2.2 w/s)")]


def test_corpus_wer_per_slice_with_numbers_as_words():
    rs = [res("a", 1.5, "eight of spades", "8 of spades"),          # "8" = "eight": no error
          res("b", 1.5, "ten of clubs", "ten of close"),            # 1 of 3
          res("c", 3.0, "the cat sat on the mat", "the cat sat on the mat")]
    scores = {(s.dimension, s.bucket): s for s in score(rs)}
    assert scores[("all", "all")].wer == pytest.approx(1 / 12)
    assert scores[("length", "1-2 s")].wer == pytest.approx(1 / 6)
    assert scores[("length", "2-4 s")].wer == 0.0
    s = scores[("all", "all")]
    assert s.low <= s.wer <= s.high


def corpus(n: int, noise: str, wrong: int) -> list[Result]:
    """n utterances of 4 words; the first ``wrong`` lose one word."""
    return [res(f"u{i}", 2.5, "turn the lights off", "turn the off" if i < wrong else "turn the lights off",
                noise) for i in range(n)]


def test_a_clear_regression_on_one_slice_is_found_and_ranked_first():
    a = corpus(30, "clean", 1) + corpus(30, "snr 5 dB", 2)
    b = corpus(30, "clean", 1) + corpus(30, "snr 5 dB", 20)
    c = compare(a, b, margin=0.02)
    worst = c.regressions()[0]
    assert (worst.dimension, worst.bucket) == ("noise", "snr 5 dB")
    assert worst.diff == pytest.approx((20 - 2) / 120) and worst.low > 0 and worst.worse_share > 0.95
    assert all(d.bucket != "clean" for d in c.regressions())
    assert c.recommendation().startswith("do not release B")


def test_no_difference_is_not_a_regression():
    a = corpus(40, "clean", 4)
    c = compare(a, list(a))
    assert not c.regressions() and c.recommendation().startswith("B may be released")


def test_a_slice_too_small_is_never_called_a_regression():
    a = corpus(3, "clean", 0)
    b = corpus(3, "clean", 3)
    c = compare(a, b)
    assert all(d.diff > 0 for d in c.deltas) and not c.regressions()


def test_pink_noise_is_mixed_at_the_snr_asked_for():
    t = np.arange(16000) / 16000
    u = Utterance("tone", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), "a")
    noisy = with_noise(u, 10.0)
    noise = noisy - u.audio
    snr = 10 * np.log10(np.mean(u.audio.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)
    assert np.array_equal(with_noise(u, 10.0), noisy)             # the same noise for every release
    assert with_noise(u, None) is u.audio
    spec = np.abs(np.fft.rfft(pink(1 << 15, 1))) ** 2
    assert spec[10:100].mean() > 5 * spec[1000:10000].mean()      # more power low: 1/f


def test_release_specs():
    assert Release.parse("base:beam=5,trim=0,pad=2") == Release("base:beam=5,trim=0,pad=2", "base", 5, False, 2.0)
    assert Release.parse("tiny.en").beam == 1
    with pytest.raises(ValueError, match="unknown option 'beems'"):
        Release.parse("base:beems=5")
