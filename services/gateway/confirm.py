"""Sensitive tools: a tool defined with ``"sensitive": true`` (an extension
of the Realtime tool definition) is never called without the user's
confirmation in the turn before.

When the LLM calls such a tool, the response does not become the call: it
asks instead, aloud ("I'd run delete notes with folder: work. Shall I go
ahead?"), and the call waits in the session (``pending_call``, stored with
it). The next response checks the user's turn since the question: a yes
("yes", "go ahead", "do it", ...) makes that response the call itself
(the function_call item and its events, the arguments the LLM chose),
without asking the LLM again; anything else drops the call and is answered
as usual. Only a response that completes settles it: a question cut off
by a barge-in asks nothing, a discarded preemptive run changes nothing."""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from services.gateway.backends.types import ToolCall

if TYPE_CHECKING:
    from services.gateway.response import Response

YES = re.compile(r"^\W*(yes|yeah|yep|yup|sure|ok|okay|confirm(ed)?|correct|right|do it|go ahead|please do|"
                 r"affirmative|proceed)\b(?!\W*(but|wait|no|not|don't|never|cancel|stop)\b)", re.I)


def affirmative(text: str) -> bool:
    return bool(YES.match(text.strip()))


def question(call: ToolCall) -> str:
    """The spoken question that stands for the call until the user says yes."""
    what = call.name.replace("_", " ").replace("-", " ")
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        args = {}
    said = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in args.items()
                     if isinstance(v, (str, int, float, bool)))[:200] if isinstance(args, dict) else ""
    return f"I'd run {what}" + (f" with {said}" if said else "") + ". Shall I go ahead? Say yes to confirm."


def guard(resp: "Response", call: ToolCall) -> str | None:
    """The LLM called ``call``: None to let it through, or (a sensitive tool
    without confirmation) the question to speak instead."""
    if call.name not in resp.sensitive:
        return None
    if resp.in_conversation:      # an out-of-band response asks too, but nothing can confirm it
        resp.asks = {"name": call.name, "arguments": call.arguments, "asked": resp.item.id}
    return question(call)


def confirmed(resp: "Response") -> ToolCall | None:
    """The waiting call, if the user's turn since its question says yes."""
    pending = resp.conv.state.pending_call
    if not pending or not resp.in_conversation or pending["name"] not in resp.sensitive:
        return None
    if resp.conv.state.find(pending["asked"]) is None or not affirmative(resp.query):
        return None
    return ToolCall(pending["name"], pending["arguments"])


def settle(resp: "Response") -> None:
    """A completed response in the conversation: the call it asked about now
    waits for a yes, and any earlier one is settled (called or dropped)."""
    if resp.in_conversation:
        resp.conv.state.pending_call = resp.asks
