"""The content words of a text: lower-cased, stop words out, crudely stemmed.

Lexical and pure. Shared by the LLM service's choice of passage sentences
(services/llm/passages.py) and the gateway's "outside the documents" rule
(services/gateway/grounding.py), so both read a question the same way."""
from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9][a-z0-9_'-]*")
STOP = frozenset("""a an and are as at be by can do does for from how i if in is it its me my of on or
so that the their then there this to was what when where which who why will with you your yours
should would could may might must have has had not no yes am were been being into onto than these
those they them we our us he she his her about after before also just only very""".split())


def stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "s"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def words(text: str) -> set[str]:
    """The content words of a text, lower-cased and crudely stemmed."""
    return {stem(w) for w in WORD.findall(text.lower()) if w not in STOP and len(w) > 1}
