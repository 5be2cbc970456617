"""common/redact.py: personal data and credentials never reach a log line or
a stored conversation, while ordinary numbers (times, dates, amounts, ids)
are kept, so logs stay useful. Cards and IBANs count only with a valid
checksum; phone numbers only with 9 to 15 digits."""
from __future__ import annotations

import logging

import pytest

from common.redact import RedactingFilter, iban_ok, luhn_ok, redact, redact_tree, spoken_digits

FOUND = [
    ("write to ada.lovelace@example.com please", "write to [EMAIL] please"),
    ("my card is 4111 1111 1111 1111.", "my card is [CARD]."),
    ("card 5500-0000-0000-0004 expires soon", "card [CARD] expires soon"),
    ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [IBAN] thanks"),
    ("send it to DE89370400440532013000", "send it to [IBAN]"),
    ("call +1 415 555 0100 tomorrow", "call [PHONE] tomorrow"),
    ("call (415) 555-0100", "call [PHONE]"),
    ("ring 020 7946 0958", "ring [PHONE]"),
    ("I live at 221B Baker Street, London", "I live at [ADDRESS], London"),
    ("1600 Pennsylvania Avenue is white", "[ADDRESS] is white"),
    ("Wir wohnen in der Hauptstrasse 5", "Wir wohnen in der [ADDRESS]"),
    ("j'habite Rue de Rivoli 12", "j'habite [ADDRESS]"),
    ('"WebSocket /v1/realtime?session_id=sess_0123abcd&model=local" [accepted]',
     '"WebSocket /v1/realtime?session_id=[REDACTED]&model=local" [accepted]'),
    ("Authorization: Bearer key-a-0123456789abcdef", "Authorization: Bearer [REDACTED]"),
    ("subprotocol openai-insecure-api-key.key-a-01234567", "subprotocol openai-insecure-api-key.[REDACTED]"),
    ("secret ek_1764561600.ab12.cd34.ef56", "secret ek_[REDACTED]"),
    ("session sess_1324d95eb2f3b66df71d closed", "session sess_1324d9… closed"),
    # Spoken digit by digit, as the ASR writes them down.
    ("my card is four one one one one one one one one one one one one one one one, thanks",
     "my card is [CARD], thanks"),
    ("call me on oh seven seven double nine, one two three four five six", "call me on [PHONE]"),
    ("it's five five five, 0100, two two three", "it's [PHONE]"),
]
KEPT = [
    "I have 3 cats and 2 dogs",
    "meet at 10:30 on 2026-12-01",
    "order 12345 costs 19.99 euros",
    "card 4111 1111 1111 1112 fails Luhn",          # 16 digits, no valid checksum, too long for a phone
    "GB82WEST12345698765433",                        # wrong IBAN check digits
    "task resp_1324d95eb2f3b66df71d created (variants {'llm': 'stable'})",
    "p95 966 ms at 4 users, 1194 ms at 3",
    "prefill of 758 prompt tokens in 1800 ms",
    "I have one or two questions, three at most, four if you count this one",
    "Oh, one more thing: two cats and three dogs",
    "one two three four five",                       # 5 digits: a count, a PIN-length code is not a phone
    "four one one one one one one one one one one one one one one two",   # fails Luhn, 16 digits
]


@pytest.mark.parametrize("text,want", FOUND)
def test_personal_data_and_credentials_are_replaced(text, want):
    assert redact(text) == want


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_numbers_and_ids_are_kept(text):
    assert redact(text) == text


def test_spoken_digits_are_read_as_digits():
    assert spoken_digits("double five oh one") == "5501"
    assert spoken_digits("triple seven, 20 nine") == "777209"


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")


def test_the_log_filter_redacts_messages_arguments_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))
    h = Keep()
    h.addFilter(RedactingFilter())
    log = logging.getLogger("test.redact")
    log.addHandler(h)
    log.propagate = False
    try:
        log.warning("user said %r", "my email is ada@example.com")
        try:
            raise ValueError("card 4111 1111 1111 1111 refused")
        except ValueError:
            log.exception("failed for %s", "+44 20 7946 0958")
    finally:
        log.removeHandler(h)
    text = "\n".join(records)
    assert "ada@example.com" not in text and "4111" not in text and "7946" not in text
    assert "[EMAIL]" in text and "[CARD]" in text and "[PHONE]" in text and "ValueError" in text


def test_redact_tree_touches_only_the_named_fields():
    item = {"id": "item_4111111111111111", "content": [{"type": "input_text", "text": "ada@example.com"}]}
    out = redact_tree(item, frozenset({"text"}))
    assert out == {"id": "item_4111111111111111", "content": [{"type": "input_text", "text": "[EMAIL]"}]}
    assert item["content"][0]["text"] == "ada@example.com"     # a copy
