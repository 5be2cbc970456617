"""Is speech over the reply the reply itself? The echo canceller (echo.py)
removes most of the assistant's voice from the microphone, but what is left
(a speaker louder than measured, a client whose timing drifts, the canceller
still converging) can reach the VAD and ASR. The ASR then transcribes the
assistant's own words, and a barge-in confirmed on them would cut the
answer. So an interim or final whose words are mostly words the assistant
spoke in the last few seconds does not confirm a barge-in (bargein.py); a
user who talks over the answer uses words of their own.

Pure functions over the item's clauses (their place on the audio timeline)
and the played position."""
from __future__ import annotations

from typing import Sequence

from services.gateway.backchannel import words
from services.gateway.session import Clause

# Echo in a transcript comes from the reply as it played during the speech
# (and its prefix padding), a little earlier than the server's played position
# says (the client's buffers, the room's delay): so the words of the reply from
# BEFORE_MS before the speech's onset to AHEAD_MS after its end. Kept short: a
# user who answers the reply's last question with one of its words ("...Paris
# or London?" "London.") a few seconds later is not taken for its echo.
BEFORE_MS = 1500.0
AHEAD_MS = 500.0
# Share of a transcript's words found in the reply's recent words from which it
# is taken for the reply's echo. Transcripts of echo are not exact (ASR errors
# on a muffled, partly cancelled voice); an interruption rarely repeats most
# of what was just said.
ECHO_SHARE = 0.7


def spoken_words(clauses: Sequence[Clause], from_ms: float, to_ms: float | None = None) -> list[str]:
    """Words of the clauses that played from ``BEFORE_MS`` before ``from_ms``
    to just after ``to_ms`` (default ``from_ms``), in the order spoken: the
    stretch of the reply whose echo a transcript of speech over that stretch
    can hold."""
    lo, hi = from_ms - BEFORE_MS, (from_ms if to_ms is None else to_ms) + AHEAD_MS
    out: list[str] = []
    for c in sorted(clauses, key=lambda c: c.start_ms):
        if c.end_ms > lo and c.start_ms < hi:
            out.extend(words(c.text))
    return out


def is_echo(text: str, recent: Sequence[str]) -> bool:
    """``text`` (an interim or final) is mostly words of ``recent`` *in the
    order they were spoken* (the longest common subsequence): an echo is the
    reply's own speech, so its transcript runs along the reply's words; a
    question of the user's that happens to share many of them ("was he not a
    young man?" over "the man was young and he was not bad": 3 of 6 in order,
    5 of 6 as a set) uses them in its own order."""
    ws = words(text)
    if not ws or not recent:
        return False
    return _common_in_order(ws, list(recent)) >= ECHO_SHARE * len(ws)


def _common_in_order(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (a transcript's few words
    against a few seconds of reply: small)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]
