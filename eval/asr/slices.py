"""Pure scoring: utterances with their reference and hypothesis in, WER/CER
per slice out, with a bootstrap confidence interval; two releases compared
per slice on the same utterances (a paired bootstrap of the difference),
regressions ranked by size, and a recommendation. No audio, no model: unit
tested on synthetic results.

A slice is a (dimension, bucket) pair: ``length`` (seconds of audio),
``rate`` (reference words per second), ``noise`` ("clean" or "snr 10 dB").
WER is corpus-level within a slice (errors over reference words), after
clients/wer.py's normalisation (numbers as words, as Whisper's English
normaliser does)."""
from __future__ import annotations

import dataclasses
import random
from typing import Iterable, Sequence

import jiwer

from clients.wer import normalise

LENGTH_BUCKETS = ((0.0, 1.0, "< 1 s"), (1.0, 2.0, "1-2 s"), (2.0, 4.0, "2-4 s"), (4.0, 1e9, "4 s +"))
RATE_BUCKETS = ((0.0, 2.2, "slow (< 2.2 w/s)"), (2.2, 3.2, "medium"), (3.2, 1e9, "fast (> 3.2 w/s)"))
BOOTSTRAP = 1000
MIN_UTTERANCES = 5      # fewer in a slice: never called a regression (too little to tell)


@dataclasses.dataclass(frozen=True)
class Result:
    """One utterance under one condition, transcribed by one release."""
    utterance: str      # its name (the same utterance under every condition and release)
    seconds: float
    noise: str          # "clean" or "snr 10 dB"
    reference: str
    hypothesis: str

    @property
    def words(self) -> int:
        return len(normalise(self.reference).split())

    def slices(self) -> list[tuple[str, str]]:
        rate = self.words / self.seconds if self.seconds > 0 else 0.0
        return [("all", "all"), ("length", _bucket(self.seconds, LENGTH_BUCKETS)),
                ("rate", _bucket(rate, RATE_BUCKETS)), ("noise", self.noise)]


def _bucket(x: float, buckets) -> str:
    return next(name for lo, hi, name in buckets if lo <= x < hi)


@dataclasses.dataclass(frozen=True)
class Counts:
    """Edit counts of one result: what corpus WER/CER sums."""
    word_errors: int
    words: int
    char_errors: int
    chars: int


def counts(r: Result) -> Counts:
    ref, hyp = normalise(r.reference), normalise(r.hypothesis)
    if not ref:
        return Counts(len(hyp.split()), 0, len(hyp), 0)
    w = jiwer.process_words(ref, hyp)
    c = jiwer.process_characters(ref, hyp)
    return Counts(w.substitutions + w.deletions + w.insertions, len(ref.split()),
                  c.substitutions + c.deletions + c.insertions, len(ref))


def _rate(cs: Sequence[Counts]) -> float:
    words = sum(c.words for c in cs)
    return sum(c.word_errors for c in cs) / words if words else 0.0


def _cer(cs: Sequence[Counts]) -> float:
    chars = sum(c.chars for c in cs)
    return sum(c.char_errors for c in cs) / chars if chars else 0.0


@dataclasses.dataclass(frozen=True)
class SliceScore:
    dimension: str
    bucket: str
    utterances: int
    words: int
    wer: float
    cer: float
    low: float          # 95 % bootstrap interval of the WER
    high: float


def _bootstrap(cs: Sequence[Counts], rng: random.Random, n: int = BOOTSTRAP) -> tuple[float, float]:
    if len(cs) < 2:
        return (_rate(cs), _rate(cs))
    vals = sorted(_rate([cs[rng.randrange(len(cs))] for _ in cs]) for _ in range(n))
    return vals[int(0.025 * n)], vals[int(0.975 * n) - 1]


def group(results: Iterable[Result]) -> dict[tuple[str, str], list[Result]]:
    out: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        for key in r.slices():
            out.setdefault(key, []).append(r)
    return out


def score(results: Sequence[Result], seed: int = 0) -> list[SliceScore]:
    rng = random.Random(seed)
    out = []
    for (dim, bucket), rs in group(results).items():
        cs = [counts(r) for r in rs]
        lo, hi = _bootstrap(cs, rng)
        out.append(SliceScore(dim, bucket, len(rs), sum(c.words for c in cs), _rate(cs), _cer(cs), lo, hi))
    return sorted(out, key=_order)


def _order(s) -> tuple[int, int, str]:
    dims = ["all", "length", "rate", "noise"]
    names = {name: i for i, (_, _, name) in enumerate(LENGTH_BUCKETS + RATE_BUCKETS)}
    return dims.index(s.dimension), names.get(s.bucket, 0), s.bucket


@dataclasses.dataclass(frozen=True)
class Delta:
    """Release B against release A on one slice (same utterances)."""
    dimension: str
    bucket: str
    utterances: int
    wer_a: float
    wer_b: float
    diff: float             # wer_b - wer_a: > 0 is B worse
    low: float              # 95 % paired-bootstrap interval of diff
    high: float
    worse_share: float      # share of bootstrap samples where B is worse: the confidence

    @property
    def regression(self) -> bool:
        return self.utterances >= MIN_UTTERANCES and self.low > 0.0


@dataclasses.dataclass(frozen=True)
class Comparison:
    deltas: list[Delta]
    margin: float

    def regressions(self) -> list[Delta]:
        """Slices where B is worse beyond chance and by more than the margin, worst first."""
        return sorted((d for d in self.deltas if d.regression and d.diff > self.margin),
                      key=lambda d: -d.diff)

    def recommendation(self) -> str:
        bad = self.regressions()
        if bad:
            worst = bad[0]
            return (f"do not release B: {len(bad)} slice(s) regress, worst {worst.dimension} "
                    f"{worst.bucket} (WER {worst.wer_a:.1%} -> {worst.wer_b:.1%})")
        overall = next(d for d in self.deltas if d.dimension == "all")
        if overall.high < 0:
            return "release B: better overall and no slice regresses beyond chance"
        return "B may be released: no slice regresses beyond chance and the margin"


def compare(a: Sequence[Result], b: Sequence[Result], margin: float = 0.02, seed: int = 0) -> Comparison:
    """Slice by slice on the utterances both releases transcribed."""
    rng = random.Random(seed)
    key = lambda r: (r.utterance, r.noise)  # noqa: E731
    bmap = {key(r): r for r in b}
    pairs = [(r, bmap[key(r)]) for r in a if key(r) in bmap]
    slices: dict[tuple[str, str], list[tuple[Counts, Counts]]] = {}
    for ra, rb in pairs:
        ca, cb = counts(ra), counts(rb)
        for k in ra.slices():
            slices.setdefault(k, []).append((ca, cb))
    deltas = []
    for (dim, bucket), ps in slices.items():
        wa, wb = _rate([p[0] for p in ps]), _rate([p[1] for p in ps])
        diffs = []
        for _ in range(BOOTSTRAP if len(ps) > 1 else 1):
            sample = [ps[rng.randrange(len(ps))] for _ in ps]
            diffs.append(_rate([p[1] for p in sample]) - _rate([p[0] for p in sample]))
        diffs.sort()
        n = len(diffs)
        lo, hi = (diffs[int(0.025 * n)], diffs[max(0, int(0.975 * n) - 1)]) if n > 1 else (wb - wa, wb - wa)
        deltas.append(Delta(dim, bucket, len(ps), wa, wb, wb - wa, lo, hi,
                            sum(1 for d in diffs if d > 0) / n))
    return Comparison(sorted(deltas, key=_order), margin)
