"""Personal data out of logs and stored conversations: a small, pure redactor.

What it finds, and how it avoids eating ordinary numbers:
- e-mail addresses;
- payment card numbers: 13-19 digits (spaces or dashes between groups) that
  pass the Luhn check, so "call me at 10 past 4" or an order number is kept;
- IBANs: country code, check digits and 11-30 letters/digits that pass the
  ISO 13616 mod-97 check;
- phone numbers: 9-15 digits with the usual separators, optionally "+" and a
  country code (fewer digits are times, years, amounts);
- street addresses, as far as a pattern can: a house number, one to four
  capitalised words and a street type (Street, Ave, Road, Rue, Strasse...);
- the same card and phone numbers spoken digit by digit, as an ASR writes
  them down ("four one one one ...", "double five", "oh" for zero): a run of
  digit words (and digit groups) is read as its digits and judged as above;
- credentials in text: Bearer tokens, client secrets, the API-key WebSocket
  subprotocol and ``session_id=`` query values; session ids are cut to
  their first 6 hex digits.

Why not a library: Microsoft Presidio (the maintained choice) needs a spaCy
language model (hundreds of MB) for its recognisers and is not installed
here; scrubadub is unmaintained. These patterns with checksums cover the
structured kinds; names and free-form addresses are not found (docs/security.md)."""
from __future__ import annotations

import logging
import re
from typing import Any

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD = re.compile(r"(?<![\d+])(?:\d[ -]?){12,18}\d(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,5}(?![\w])")
ADDRESS = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][\w'-]*\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|"
    r"Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq|Parkway|Pkwy|Highway|Hwy|Close|Crescent)\b\.?")
ADDRESS_EU = re.compile(r"\b(?:[A-Z][\w'-]*(?:strasse|straße|str\.|weg|gasse|platz)|(?:Rue|Via|Calle|Avenida)"
                        r"(?:\s+(?:de|del|la|du|des|di))?(?:\s+[A-Z][\w'-]*){1,3})\s+\d{1,5}[a-z]?\b")
SECRETS = re.compile(r"(?i)(\bbearer\s+|openai-insecure-api-key\.|session_id=|\bek_)[^\s&\"',;]+")
# A whole session id resumes the conversation on a keyless gateway: logs keep
# only its first 6 hex digits, enough to follow one session through a log.
SESSION_ID = re.compile(r"\bsess_([0-9a-f]{6})[0-9a-f]{14}\b")

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_DW = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|\d+)"
# A run of spoken digits: digit words or digit groups, "double"/"triple" before
# one, separated by spaces, commas, dashes or dots; at least 9 tokens' worth is
# judged (fewer digits are never a phone or card number).
SPOKEN = re.compile(rf"(?i)\b(?:(?:double|triple)\s+)?{_DW}(?:[\s,.-]+(?:(?:double|triple)\s+)?{_DW}){{4,}}\b")

PLACEHOLDER = {"email": "[EMAIL]", "card": "[CARD]", "iban": "[IBAN]", "phone": "[PHONE]",
               "address": "[ADDRESS]"}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _card(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group())
    return PLACEHOLDER["card"] if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group()


def _iban(m: re.Match) -> str:
    return PLACEHOLDER["iban"] if iban_ok(m.group()) else m.group()


def _phone(m: re.Match) -> str:
    n = sum(ch.isdigit() for ch in m.group())
    return PLACEHOLDER["phone"] if 9 <= n <= 15 else m.group()


def spoken_digits(run: str) -> str:
    """The digits a spoken run stands for: "double five oh one" -> "5501"."""
    out, repeat = [], 1
    for tok in re.findall(r"[A-Za-z]+|\d+", run):
        low = tok.lower()
        if low in ("double", "triple"):
            repeat = 2 if low == "double" else 3
            continue
        digits = tok if tok.isdigit() else _DIGIT_WORDS[low]
        out.append(digits * repeat if len(digits) == 1 else digits)
        repeat = 1
    return "".join(out)


def _spoken(m: re.Match) -> str:
    if not any(ch.isalpha() for ch in m.group()):
        return m.group()              # plain digits: the patterns below judge them
    digits = spoken_digits(m.group())
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return PLACEHOLDER["card"]
    if 9 <= len(digits) <= 15:
        return PLACEHOLDER["phone"]
    return m.group()


def redact(text: str) -> str:
    """``text`` with personal data replaced by [EMAIL], [CARD], [IBAN],
    [PHONE], [ADDRESS] and credentials by [REDACTED]."""
    if not text:
        return text
    text = SECRETS.sub(lambda m: m.group(1) + "[REDACTED]", text)
    text = SESSION_ID.sub(r"sess_\1…", text)
    text = EMAIL.sub(PLACEHOLDER["email"], text)
    text = IBAN.sub(_iban, text)
    text = SPOKEN.sub(_spoken, text)
    text = CARD.sub(_card, text)
    text = PHONE.sub(_phone, text)
    text = ADDRESS.sub(PLACEHOLDER["address"], text)
    return ADDRESS_EU.sub(PLACEHOLDER["address"], text)


class RedactingFilter(logging.Filter):
    """Redacts every record that passes a handler (its formatted message and
    exception text), so no logger, ours or a library's (uvicorn's access log
    with its query strings), writes personal data or credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:   # a broken format string: leave it to logging's own error report
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (default: the root)."""
    for h in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())


def redact_tree(value: Any, keys: frozenset[str]) -> Any:
    """A copy of JSON-like ``value`` with the strings under ``keys`` redacted."""
    if isinstance(value, dict):
        return {k: (redact(v) if k in keys and isinstance(v, str) else redact_tree(v, keys))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v, keys) for v in value]
    return value
