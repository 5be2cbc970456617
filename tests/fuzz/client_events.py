"""A seeded generator of Realtime client messages, valid and invalid, for the
protocol fuzzer: every event type with well-formed, wrong-typed, out-of-range,
oversized and hostile values, interleaved with audio appends, plus raw text
that is not an event at all (broken JSON, deep nesting, huge numbers).

Each message is (text, event_id or None): the event_id the gateway must echo
in any ``error`` the message causes. Same seed, same messages."""
from __future__ import annotations

import base64
import json
import random
from typing import Any, Callable

from services.gateway.protocol import CLIENT_EVENTS

TYPES = list(CLIENT_EVENTS)
# Values for any field: right and wrong types, edges, long and odd strings
# (plus "x" * one of LONG_STRINGS). Shared with the hypothesis strategies.
SCALARS = (
    None, True, False, 0, 1, -1, 7, 2 ** 31, -(2 ** 63), 10 ** 18, 0.5, -0.0, 1e300, 3.7,
    "", "x", "audio", "text", "inf", "server_vad", "default", "auto", "none", "user", "assistant",
    "system", "message", "function_call", "é" * 40, "\u0000\ud7ff",
)
LONG_STRINGS = (300, 20_000)
JUNK_KINDS = 6


def junk(kind: int, depth: int = 40, value: Any = None) -> tuple[str, str | None]:
    """Text that is not a valid event (0 <= kind < JUNK_KINDS): cut-off JSON,
    nesting ``depth`` deep, a 5000-digit integer, NaN, ``value`` as JSON (any
    JSON, rarely an event), bytes that are not JSON. With the event_id it
    carries, which the gateway must find even though it cannot decode it."""
    if kind == 0:
        return '{"type": "session.update", "event_id": "bad", "session": {', "bad"
    if kind == 1:
        return '{"type": "response.create", "event_id": "deep", "response": ' + "[" * depth + "]" * depth + "}", "deep"
    if kind == 2:
        return '{"type": "response.create", "event_id": "bigint", "x": ' + "9" * 5000 + "}", "bigint"
    if kind == 3:
        return '{"type": "response.create", "event_id": "nan", "x": NaN}', "nan"
    if kind == 4:
        return json.dumps(value), None
    return "\x00\xff not json", None


class ClientEvents:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.n = 0
        self.item_ids: list[str] = []

    # -- values -------------------------------------------------------------------------
    def scalar(self) -> Any:
        return self.r.choice([*SCALARS, "x" * self.r.choice(LONG_STRINGS)])

    def value(self, depth: int = 0) -> Any:
        roll = self.r.random()
        if depth < 3 and roll < 0.12:
            return [self.value(depth + 1) for _ in range(self.r.randint(0, 4))]
        if depth < 3 and roll < 0.22:
            return {self.r.choice(["type", "text", "id", "x", "rate"]): self.value(depth + 1)
                    for _ in range(self.r.randint(0, 3))}
        return self.scalar()

    def maybe(self, good: Callable[[], Any]) -> Any:
        """Usually a well-formed value, sometimes anything at all."""
        return good() if self.r.random() < 0.8 else self.value()

    def pcm(self) -> str:
        n = self.r.choice([0, 2, 480, 960, 4800, 3, 9601])
        raw = bytes(self.r.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
        text = base64.b64encode(raw[:n]).decode()
        return text if self.r.random() < 0.95 else text[:-3] + "@@"

    def item_id(self) -> str:
        if self.item_ids and self.r.random() < 0.6:
            return self.r.choice(self.item_ids)
        return self.r.choice(["item_x", "", "root", "i" * 300])

    # -- events -------------------------------------------------------------------------
    def body(self, typ: str) -> dict[str, Any]:
        m = self.maybe
        r = self.r
        if typ == "input_audio_buffer.append":
            return {"audio": m(self.pcm)}
        if typ == "session.update":
            session: dict[str, Any] = {}
            for key, gen in (
                ("type", lambda: "realtime"), ("instructions", lambda: r.choice(["Be brief.", "x" * 16_001])),
                ("output_modalities", lambda: r.choice([["audio"], ["text"], [], ["video"]])),
                ("max_output_tokens", lambda: r.choice([1, 64, 4096, 4097, "inf", 0])),
                ("tools", lambda: [{"type": "function", "name": "f"}] * r.choice([0, 1, 129])),
                ("audio", lambda: {"input": {"format": {"type": "audio/pcm", "rate": r.choice([16000, 24000, 8000])},
                                             "turn_detection": r.choice([None, {"type": "server_vad",
                                                                                "threshold": r.random(),
                                                                                "silence_duration_ms": 300}])},
                                   "output": {"voice": r.choice(["default", "v" * 300]),
                                              "speed": r.choice([1.0, 9.0])}}),
                ("retrieval", lambda: {"enabled": r.random() < 0.5, "k": r.choice([1, 3, 50])}),
                ("id", lambda: r.choice(["sess_nope", "x" * 300])),
            ):
                if r.random() < 0.3:
                    session[key] = m(gen)
            return {"session": m(lambda: session)}
        if typ == "conversation.item.create":
            iid = f"item_fz{self.n}"
            role = r.choice(["user", "user", "assistant", "system", "robot"])
            ctype = {"user": "input_text", "assistant": "output_text"}.get(role, "input_text")
            item = {"type": m(lambda: "message"), "id": iid, "role": role,
                    "content": m(lambda: [{"type": ctype, "text": r.choice(["hello", "x" * 16_001, "card 4111 1111 1111 1111"])}])}
            if r.random() < 0.1:
                item = {"type": "function_call_output", "call_id": "c1", "output": m(lambda: "42")}
            self.item_ids.append(iid)
            del self.item_ids[:-50]
            return {"item": m(lambda: item), "previous_item_id": r.choice([None, None, "root", self.item_id()])}
        if typ in ("conversation.item.delete", "conversation.item.retrieve"):
            return {"item_id": m(self.item_id)}
        if typ == "conversation.item.truncate":
            return {"item_id": m(self.item_id), "content_index": m(lambda: 0),
                    "audio_end_ms": m(lambda: r.choice([0, 100, 10 ** 9, -5]))}
        if typ == "response.create":
            resp = {"output_modalities": m(lambda: [r.choice(["text", "audio"])]),
                    "max_output_tokens": m(lambda: r.choice([8, "inf", 2 ** 40])),
                    "metadata": m(lambda: {"k": "v"}), "conversation": m(lambda: r.choice(["auto", "none"]))}
            return {"response": m(lambda: resp)}
        if typ == "response.cancel":
            return {"response_id": m(lambda: r.choice(["resp_x", None]))}
        return {}

    def raw(self) -> tuple[str, str | None]:
        """Text that is not a valid event, and the event_id it carries."""
        kind = self.r.randrange(JUNK_KINDS)
        if kind == 1:
            return junk(kind, depth=self.r.choice([40, 5000]))
        return junk(kind, value=self.value() if kind == 4 else None)

    def next(self) -> tuple[str, str | None]:
        self.n += 1
        if self.r.random() < 0.03:
            return self.raw()
        # Audio appends are the bulk of a real session's traffic.
        typ = "input_audio_buffer.append" if self.r.random() < 0.4 else self.r.choice(TYPES + ["session.fly"])
        eid = f"fz{self.n}"
        ev = {"type": typ, "event_id": eid, **self.body(typ)}
        if self.r.random() < 0.02:
            ev["type"] = self.value()
        return json.dumps(ev), eid
