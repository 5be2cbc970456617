"""Word error rate as the benchmarks and tests score ASR: text normalised the
way Whisper's English normaliser does for the things these clips and voice
commands contain (case, punctuation, a hyphen splits words, "Mr." is
"mister", and numbers are words: "8" = "eight", "10" = "ten", "21" =
"twenty one"), so a model is not charged for writing digits."""
from __future__ import annotations

import re

import jiwer

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 ≤ n < 1,000,000 as words ("twenty one", "one hundred five")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    return number_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))


def normalise(text: str) -> str:
    """Lower case, words only, numbers spelled out."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())          # 1,000
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} " if len(m.group()) < 7
                  else m.group(), text)
    words = re.sub(r"[^a-z0-9' ]", " ", text.replace("-", " ")).split()
    return " ".join("mister" if w == "mr" else w for w in words)


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER (errors over all reference words) after ``normalise``."""
    return jiwer.wer([normalise(r) for r in refs], [normalise(h) for h in hyps])


def repeated_run(text: str, min_words: int = 2) -> str | None:
    """The first run of ``min_words`` or more words said twice back to back
    ("for them for them"), after ``normalise``; None when there is none."""
    words = normalise(text).split()
    for n in range(len(words) // 2, min_words - 1, -1):
        for i in range(len(words) - 2 * n + 1):
            if words[i:i + n] == words[i + n:i + 2 * n]:
                return " ".join(words[i:i + n])
    return None
