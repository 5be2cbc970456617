"""Is an interim transcript a real interruption? Coughs and clicks transcribe
to nothing (or to a bracketed annotation like "(coughs)"); backchannels
("mm-hm", "uh-huh", "yeah", "ok") are the listener keeping the speaker going.
Neither should kill the assistant's answer."""
from __future__ import annotations

import re

BACKCHANNELS = frozenset("""
mm mmm mhm mm-hm mm-hmm mhmm hm hmm hmmm uh-huh uh-hum uh huh um umm uhm er erm ah ahh oh ooh
yeah yea yep yup yes ok okay kay right sure alright aha i see
""".split())
_ANNOTATION = re.compile(r"[\[(*][^\])*]*[\])*]")
_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(_ANNOTATION.sub(" ", text.lower()))


def is_real(text: str) -> bool:
    """True when the text has at least one word that is not a backchannel."""
    return any(w not in BACKCHANNELS for w in words(text))
