"""What both protocol fuzzers share: the real gateway app on fake backends
(whose VAD hears speech one second in every two, so appended audio makes
turns, barge-ins and preemptive answers happen among everything else, and
scores its stops for semantic_vad, complete or not; whose LLM can be made to
call the tools it is offered: CallingLlm), the
marker round trip that reads everything a batch of messages caused, and the
bounds a stored session must stay within."""
from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Sequence

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.backends.types import ChatMessage, ToolCall, Tools
from services.gateway.fakes import FakeBackends, FakeLlm, FakeProvider
from services.gateway.settings import GatewaySettings

MAX_ITEMS = 50
MAX_MESSAGE_BYTES = 256 * 1024
MAX_STORED_BYTES = 4 << 20


REPLY = "Fine, thanks."
# semantic_vad's end-of-turn probability of each stop, in turn: complete
# (the short window), unsure and incomplete (the eagerness's long window).
TURN_PROBS = (0.95, 0.5, 0.1) * 2000


class CallingLlm(FakeLlm):
    """A fake LLM that uses the tools it is offered: it calls one (the named
    one of tool_choice a function, else the first) on every request that
    offers tools, unless the last message is a tool's result, which it
    answers in words. Its calls come quickly (10 ms), so that a client's
    answer to a call can follow within the same few events."""

    def __init__(self, clock: Any, replies: Sequence[str | ToolCall]) -> None:
        super().__init__(clock, replies)
        self.call_s = 0.01

    def reply_to(self, messages: Sequence[ChatMessage], tools: Tools | None) -> str | ToolCall:
        if tools is None or (messages and messages[-1].role == "tool"):
            return super().reply_to(messages, tools)
        return ToolCall(tools.name or tools.specs[0].name, json.dumps({"n": len(self.requests)}))


def fuzz_app(max_items: int = MAX_ITEMS, tool_calls: bool = False) -> Any:
    """The gateway app (no Redis, no web page) on fake backends, every
    session of it on the same speech schedule: speech [2k, 2k+1) s after the
    app was made. ``tool_calls``: the LLM is a CallingLlm."""
    clock = MonotonicClock()
    start = clock.now()
    speech = [(start + 2 * k, start + 2 * k + 1) for k in range(1, 5000)]

    def backends(sid: str) -> FakeBackends:
        b = FakeBackends.create(clock, speech=speech, texts=("what time is it",), replies=(REPLY,),
                                turn_probs=TURN_PROBS)
        if tool_calls:
            b.llm = CallingLlm(clock, (REPLY,))
        return b

    provider = FakeProvider(backends)
    return create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", max_items=max_items,
                                      max_message_bytes=MAX_MESSAGE_BYTES, outbox_max_events=4096),
                      backends=provider)


def marker(mark: str) -> str:
    """A message whose only answer is an ``item_not_found`` error naming ``mark``."""
    return json.dumps({"type": "conversation.item.retrieve", "item_id": "fuzz-mark", "event_id": mark})


def read_to_marker(ws, mark: str) -> list[dict]:
    """Send the marker and read until its own error: everything the earlier
    messages caused synchronously has been read by then. Returns the events
    read before it (the marker's error not included)."""
    ws.send_text(marker(mark))
    out = []
    while True:
        ev = ws.receive_json()
        if ev["type"] == "error" and ev["error"].get("event_id") == mark:
            return out
        out.append(ev)


def drain(ws, mark: str, sent: set[str]) -> list[dict]:
    """read_to_marker, checking that every error names an event_id that was
    sent. Returns the errors that name no event_id (only a message without
    one may cause such an error)."""
    anonymous = []
    for ev in read_to_marker(ws, mark):
        if ev["type"] != "error":
            continue
        err = ev["error"]
        if err.get("event_id") is None:
            anonymous.append(err)
        elif err["event_id"] not in sent:
            raise AssertionError(f"an error names an event_id never sent: {err}")
    return anonymous


def check_stored(stored: dict, max_items: int = MAX_ITEMS) -> None:
    """What a session keeps stays bounded, however it was driven."""
    assert len(stored["items"]) <= max_items, f"{len(stored['items'])} items stored (limit {max_items})"
    size = len(json.dumps(stored))
    assert size <= MAX_STORED_BYTES, f"stored session of {size} bytes (limit {MAX_STORED_BYTES})"


class ErrorLog(logging.Handler):
    """Records logged at ERROR or above under ``services``, while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, records: Iterable[logging.LogRecord] | None = None) -> list[str]:
        return [r.getMessage() + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
                for r in (self.records if records is None else records)]

    def __enter__(self) -> "ErrorLog":
        logging.getLogger("services").addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger("services").removeHandler(self)
