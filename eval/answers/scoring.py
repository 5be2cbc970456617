"""Scoring one answer against its question and the passages the model saw:
pure functions over strings, no model, no network.

- ``fact_hits``: which key facts the answer states (any alternative matches).
- ``says_unknown``: the answer declines ("I don't know", "the documents do not say").
- ``unsupported``: the specific claims of the answer (commands, key
  combinations, setting names, paths, addresses, numbers, names) that appear
  in none of the passages and not in the question. This is the mechanical
  half of "does it state something the passages do not contain": an invented
  "press Ctrl+P" or "run make start" is caught, an invented sentence in plain
  words is not; ``novel_share`` gives that second half a number (the share of
  the answer's content words found nowhere in the passages or the question),
  which paraphrase also raises, so it is reported, never used as a verdict.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from common.content_words import stem

# -- key facts -----------------------------------------------------------------------


def fact_hits(answer: str, facts: Sequence[Sequence[re.Pattern]]) -> list[bool]:
    """For each fact, whether the answer states it (whitespace-normalised,
    markdown code marks removed, so "`make run`" states "make run")."""
    text = normalise(answer)
    return [any(p.search(text) for p in fact) for fact in facts]


def normalise(text: str) -> str:
    return " ".join(text.replace("`", "").replace("**", "").split())


# -- declining -----------------------------------------------------------------------

UNKNOWN = re.compile(
    r"\b(i|we) (do not|don't|dont|do n't) (know|have)\b|\bi'?m not sure\b|\bnot sure\b|"
    r"\b(i )?(can ?not|can't|couldn't|could not) (find|tell|answer|say)\b|"
    r"\bno (information|mention|details?)\b|\bnothing (about|on)\b|"
    r"\b(is|are|isn't|aren't) not (mentioned|covered|described|in the)\b|"
    r"\b(isn't|aren't|not) (mentioned|covered|described)\b|"
    r"\b(documents?|passages?|guide|references?) (do|does) not (say|mention|cover|describe)\b|"
    r"\b(documents?|passages?|guide|references?) (don't|doesn't) (say|mention|cover|describe)\b|"
    r"\bunknown to me\b|\bi have no (idea|information)\b",
    re.IGNORECASE)


def says_unknown(answer: str) -> bool:
    return bool(UNKNOWN.search(normalise(answer).replace("\u2019", "'")))


# -- specific claims -----------------------------------------------------------------

# "make sure", "make it" are English, not the make tool.
_MAKE_ENGLISH = {"sure", "it", "the", "a", "an", "your", "you", "them", "that", "this", "some", "any",
                 "use", "changes", "things", "one", "up", "certain", "out", "more", "less", "me",
                 "things", "its", "their", "my", "our", "his", "her", "no", "all", "every", "each"}
_SLASHED_WORDS = {"and/or", "on/off", "yes/no", "he/she", "input/output", "read/write", "s/he", "either/or"}
_KEY = r"(?:ctrl|control|alt|option|cmd|command|shift|super|meta)"
PATTERNS: dict[str, re.Pattern] = {
    "key": re.compile(rf"\b{_KEY}(?:\s*[-+]\s*\w+)+|\b{_KEY}\s+[a-z0-9]\b", re.IGNORECASE),
    "command": re.compile(
        r"\bmake [a-z][a-z0-9-]*|\b(?:\.venv/bin/)?python3? -m [\w.]+|\bkubectl(?: [\w/<>-]+){1,2}|"
        r"\bdocker[- ]compose(?: [\w-]+)?|\b(?:sudo|pip3?|apt(?:-get)?|npm|brew|systemctl|redis-cli|"
        r"curl|wget|git) [\w.-]+", re.IGNORECASE),
    "setting": re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"),
    "address": re.compile(r"\b(?:https?|wss?)://[^\s,;)]+|\b(?:localhost|\d{1,3}(?:\.\d{1,3}){3}):\d+\b",
                          re.IGNORECASE),
    "path": re.compile(r"(?<![\w/])(?:[\w.-]+/)+[\w.-]*|\b[\w-]+\.(?:md|py|txt|yml|yaml|json|toml|sh|onnx|gguf)\b"),
    "number": re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\d.]*\d)"),
}
NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-zA-Z0-9]+(?:[ -][A-Z][a-zA-Z0-9]+)*")


def _key_form(text: str) -> str:
    """Key combinations compared in one spelling: "Control + P" -> "ctrl-p"."""
    t = re.sub(r"\bcontrol\b", "ctrl", text.lower())
    return re.sub(r"\s*[-+]\s*|\s+(?=[a-z0-9]\b)", "-", t)


def specifics(answer: str) -> list[tuple[str, str]]:
    """(kind, text) for every specific claim in the answer, in order, without repeats."""
    text = normalise(answer)
    out: list[tuple[str, str]] = []
    taken: list[tuple[int, int]] = []
    for kind, pat in PATTERNS.items():
        for m in pat.finditer(text):
            claim = m.group().rstrip(".,;:")
            if kind == "command" and claim.lower().startswith("make ") \
                    and claim.split()[1].lower() in _MAKE_ENGLISH:
                continue
            if kind == "path" and claim.lower() in _SLASHED_WORDS:
                continue    # words, not paths
            if any(s <= m.start() < e for s, e in taken):
                continue    # part of a claim already taken (the port of an address)
            taken.append((m.start(), m.end()))
            if (kind, claim) not in out:
                out.append((kind, claim))
    for m in NAME.finditer(text):
        if not any(s <= m.start() < e for s, e in taken) and ("name", m.group()) not in out:
            out.append(("name", m.group()))
    return out


def _supported(kind: str, claim: str, support: str) -> bool:
    if kind == "key":
        return _key_form(claim) in _key_form(support)
    if kind == "number":
        num = claim.replace(",", "")
        return re.search(rf"(?<![\d.]){re.escape(num)}(?![\d])", support.replace(",", "")) is not None
    if kind == "command":
        return " ".join(claim.lower().split()[:3]) in support.lower()
    return claim.lower() in support.lower()


def unsupported(answer: str, passages: Iterable[str], question: str = "") -> list[tuple[str, str]]:
    """The answer's specific claims found in no passage and not in the question."""
    support = normalise("\n".join([question, *passages]))
    return [(k, c) for k, c in specifics(answer) if not _supported(k, c, support)]


# -- content words -------------------------------------------------------------------

STOP = set("""a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further
had has have having he her here hers him his how i if in into is it its itself just let me more most
my no nor not now of off on once only or other our out over own same she should so some such than
that the their them then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself also may
might must shall get got make makes made use used using one two three yes okay ok sure please
thing things way ways like want need help it's don't i'm you're that's there's can't won't
""".split())
WORD = re.compile(r"[a-z][a-z0-9'-]+")


def content_words(text: str) -> list[str]:
    return [stem(w) for w in WORD.findall(text.lower()) if w not in STOP and len(w) > 2]


def novel_share(answer: str, passages: Iterable[str], question: str = "") -> float:
    """Share of the answer's content words that occur in no passage and not in
    the question (0 for an answer without content words)."""
    words = content_words(answer)
    if not words:
        return 0.0
    known = set(content_words("\n".join([question, *passages])))
    return sum(w not in known for w in words) / len(words)
