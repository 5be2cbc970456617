"""Bounds on everything a client can make a session hold, so one connection
cannot grow the gateway's memory, its Redis entry or the LLM prompt without
limit. Each is checked where the event is validated (protocol.py) and
exceeding one is an ``error`` naming the field and the limit; the session
goes on. Conversation items beyond ``GatewaySettings.max_items`` are not
refused: the oldest leave the conversation, each with
``conversation.item.deleted``, as a long voice conversation must go on.

Worst case kept per session: max_items (200) x MAX_TEXT_CHARS (16 k) of item
text, about 3.2 MB, plus MAX_TOOLS_BYTES of tools."""
from __future__ import annotations

MAX_EVENT_ID_CHARS = 512
MAX_INSTRUCTIONS_CHARS = 16_000       # session.instructions, response.instructions
MAX_TEXT_CHARS = 16_000               # an item's text, transcript, function output or arguments
MAX_CONTENT_PARTS = 16                # content parts of one message item
MAX_TOOLS = 128                       # as the Realtime API
MAX_TOOLS_BYTES = 64 * 1024           # all tools of a session, as JSON
MAX_METADATA_PAIRS = 16               # as the Realtime API's metadata
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
DEFAULT_STRING_CHARS = 256            # every other string field: ids, names, voice, model, ...

# By full path, then by the path's last part; "audio" is bounded by the message size.
_BY_PATH = {"session.instructions": MAX_INSTRUCTIONS_CHARS, "response.instructions": MAX_INSTRUCTIONS_CHARS,
            "audio": None}
_BY_FIELD = {"text": MAX_TEXT_CHARS, "transcript": MAX_TEXT_CHARS, "output": MAX_TEXT_CHARS,
             "arguments": MAX_TEXT_CHARS}


def max_chars(path: str) -> int | None:
    """The longest string accepted at ``path`` (None: no own limit)."""
    if path in _BY_PATH:
        return _BY_PATH[path]
    return _BY_FIELD.get(path.rsplit(".", 1)[-1], DEFAULT_STRING_CHARS)
