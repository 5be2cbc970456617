"""Hypothesis strategies for Realtime client event bodies, for the protocol
state machine (test_protocol_statemachine.py). Each event kind has a
``valid_*`` strategy (the gateway must accept it) and an ``invalid_*`` one:
a valid body with exactly one field made wrong (wrong type, out of range,
over a limit, unsupported), which the gateway must refuse with an ``error``
naming the event. Odd values come from the seeded fuzzer's pools
(client_events.SCALARS) so both fuzzers try the same edges."""
from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from services.gateway import limits
from services.gateway.session import EAGERNESS, SUPPORTED_INPUT_RATES, SUPPORTED_OUTPUT_RATES
from tests.fuzz.client_events import LONG_STRINGS, SCALARS

class Long(str):
    """A long string that prints short: hypothesis prints every step of a failure."""

    def __repr__(self) -> str:
        return f"{self[:1]!r} * {len(self)}"


class Many(list):
    """A long list of one value that prints short."""

    def __repr__(self) -> str:
        return f"[{self[0]!r}] * {len(self)}"


class Pcm(str):
    """Base64 audio that prints as its size."""

    def __repr__(self) -> str:
        return f"<{len(self) * 3 // 4} bytes of audio>"


NOT_STRINGS = [v for v in SCALARS if not isinstance(v, str) and v is not None]
NOT_OBJECTS = [v for v in SCALARS if v is not None] + [[], [1, 2]]
ODD_STRINGS = [v for v in SCALARS if isinstance(v, str)] + [Long("x" * n) for n in LONG_STRINGS]

short_text = st.text(max_size=24) | st.sampled_from(ODD_STRINGS[:-1])   # none over 16,000 characters


def set_path(obj: dict, path: tuple[str, ...], value: Any) -> dict:
    """``obj`` (a copy) with ``value`` at ``path``, making objects on the way."""
    out = dict(obj)
    if len(path) == 1:
        out[path[0]] = value
        return out
    inner = out.get(path[0])
    out[path[0]] = set_path(inner if isinstance(inner, dict) else {}, path[1:], value)
    return out


def with_one_bad(valid: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """A valid body with one (path, wrong value) of ``bad`` put in."""
    return st.builds(lambda body, pv: set_path(body, pv[0], pv[1]), valid, bad)


def bad(path: str, *values: Any) -> st.SearchStrategy:
    return st.tuples(st.just(tuple(path.split("."))), st.sampled_from(values))


# -- session.update ---------------------------------------------------------------------------
TD_FIELDS = {
    "threshold": st.floats(0.01, 0.99),
    "prefix_padding_ms": st.integers(0, 2000),
    "silence_duration_ms": st.integers(100, 5000),
    "min_interrupt_ms": st.integers(0, 5000),
    "false_interruption_timeout_ms": st.integers(0, 10000),
    "create_response": st.booleans(),
    "interrupt_response": st.booleans(),
    "preemptive_generation": st.booleans(),
}
# No "type" is server_vad; eagerness only with semantic_vad.
server_vad = st.fixed_dictionaries({}, optional={"type": st.just("server_vad"), **TD_FIELDS})
semantic_vad = st.fixed_dictionaries({"type": st.just("semantic_vad")},
                                     optional={"eagerness": st.sampled_from(EAGERNESS), **TD_FIELDS})
turn_detection = st.none() | server_vad | semantic_vad

tool = st.fixed_dictionaries({"type": st.just("function"),
                              "name": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)},
                             optional={"description": short_text,
                                       "parameters": st.sampled_from([
                                           {"type": "object", "properties": {}},
                                           {"type": "object", "properties": {"n": {"type": "integer"}}}]),
                                       # Called only after the user's yes (confirm.py).
                                       "sensitive": st.booleans()})
tools = st.lists(tool, max_size=3, unique_by=lambda t: t["name"])

valid_session = st.fixed_dictionaries({}, optional={
    "type": st.just("realtime"),
    "model": st.text(max_size=20),
    "instructions": short_text | st.just(Long("i" * limits.MAX_INSTRUCTIONS_CHARS)),
    "output_modalities": st.sampled_from([["audio"], ["text"], ["text", "audio"]]),
    "max_output_tokens": st.integers(1, 4096) | st.just("inf"),
    "audio": st.fixed_dictionaries({}, optional={
        "input": st.fixed_dictionaries({}, optional={
            "format": st.fixed_dictionaries({"type": st.just("audio/pcm"),
                                             "rate": st.sampled_from(SUPPORTED_INPUT_RATES)}),
            "turn_detection": turn_detection,
            "noise_reduction": st.none() | st.sampled_from([{"type": "near_field"}, {"type": "far_field"}]),
        }),
        "output": st.fixed_dictionaries({}, optional={
            "format": st.fixed_dictionaries({"type": st.just("audio/pcm"),
                                             "rate": st.sampled_from(SUPPORTED_OUTPUT_RATES)}),
            "voice": st.sampled_from(["default", "alloy", "ash", Long("v" * 256)]),
            "speed": st.floats(0.25, 1.5),
        }),
    }),
    "retrieval": st.fixed_dictionaries({}, optional={"enabled": st.booleans(), "k": st.integers(1, 20)}),
    "tools": tools,
    "tool_choice": st.sampled_from(["auto", "none", "required"]),
})
valid_session_update = st.fixed_dictionaries({"session": valid_session})

TD = "session.audio.input.turn_detection"
bad_session_field = st.one_of(
    bad("session", *NOT_OBJECTS, None),
    bad("session.type", "realtime2", "transcription", *NOT_STRINGS),
    bad("session.instructions", Long("i" * (limits.MAX_INSTRUCTIONS_CHARS + 1)), *NOT_STRINGS),
    bad("session.model", Long("m" * 257), *NOT_STRINGS),
    bad("session.output_modalities", [], ["video"], ["audio", 1], *NOT_OBJECTS),
    bad("session.max_output_tokens", 0, -1, 4097, 2 ** 31, 2 ** 40, 10 ** 18, True, 1.5, "x", "", [1], {}),
    bad("session.audio", *NOT_OBJECTS),
    bad("session.audio.input.format.rate", 8000, 44100, 0, -16000, "16000", True),
    bad("session.audio.input.format.type", "audio/pcmu", "", *NOT_STRINGS),
    bad("session.audio.output.speed", 0.0, 0.2, 1.6, 9.0, 1e300, -1, "1", True),
    bad("session.audio.output.voice", Long("v" * 257), *NOT_STRINGS),
    bad(TD, 1, "server_vad", [], True),
    bad(TD + ".type", "none", "", "semantic", "SEMANTIC_VAD", Long("x" * 300), 1),
    # Wrong for any type (no type is server_vad, which takes no eagerness at all).
    bad(TD + ".eagerness", "sometimes", "", "LOW", "eager", 3, 0.5, True, ["low"], {}, Long("e" * 300)),
    bad(TD + ".threshold", 0.0, 1.0, 5, -0.5, "0.5", True),
    bad(TD + ".silence_duration_ms", 0, 99, 5001, 10 ** 18, 0.5, "300"),
    bad(TD + ".prefix_padding_ms", -1, 2001, 2 ** 40),
    bad(TD + ".create_response", 0, 1, "yes"),
    bad("session.audio.input.noise_reduction", {"type": "x"}, {}, "near_field", 1),
    bad("session.retrieval.k", 0, 21, 50, "3", True),
    bad("session.retrieval.enabled", 0, 1, "true"),
    bad("session.tools", Many([{"type": "function", "name": "f"}] * (limits.MAX_TOOLS + 1)),
        [{"type": "function", "name": "bad name"}], [{"type": "web_search"}], [1],
        [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}], "f", {},
        [{"type": "function", "name": "f", "parameters": {"type": "string"}}],
        [{"type": "function", "name": "f", "parameters": "{}"}],
        [{"type": "function", "name": "f", "sensitive": "yes"}],
        [{"type": "function", "name": "f", "description": Long("d" * 1025)}],
        [{"type": "function", "name": Long("n" * 65)}], [{"type": "function", "name": ""}]),
    bad("session.tool_choice", "sometimes", {"type": "function", "name": "nope"}, 1, []),
)
# An id names a session to resume: never this one, and never while items exist.
bad_session_id = bad("session.id", "sess_nope", Long("s" * 257), 7)
invalid_session_update = with_one_bad(valid_session_update, bad_session_field | bad_session_id)

# Turn detection alone, switched mid-session (audio flowing): eagerness is
# refused with server_vad (or no type), and every unknown eagerness.
turn_detection_update = st.builds(lambda td: {"session": {"audio": {"input": {"turn_detection": td}}}},
                                  turn_detection)
invalid_turn_detection_update = st.one_of(
    st.builds(lambda td, e: {"session": {"audio": {"input": {"turn_detection": {**td, "eagerness": e}}}}},
              server_vad, st.sampled_from(EAGERNESS)),
    with_one_bad(turn_detection_update, bad(TD + ".eagerness", "sometimes", "", "High", 3, False, ["auto"], {})),
    with_one_bad(turn_detection_update, bad(TD + ".type", "semantic", "none", 1)),
)


# -- audio --------------------------------------------------------------------------------------
@st.composite
def pcm(draw, most_ms: int = 200) -> str:
    """Base64 of 16-bit PCM, up to ``most_ms`` at 24 kHz: a drawn pattern, repeated."""
    samples = draw(st.integers(0, most_ms * 24))
    pattern = draw(st.binary(min_size=2, max_size=32))
    raw = (pattern * (2 * samples // len(pattern) + 1))[:2 * samples]
    return Pcm(base64.b64encode(raw).decode())


valid_append = st.fixed_dictionaries({"audio": pcm()})
invalid_append = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"audio": st.sampled_from(NOT_STRINGS)}),
    st.fixed_dictionaries({"audio": st.sampled_from(["A", "AAA", "@@@@", "AAAA@@", "AA==AA==", "ü"])}),
    # An odd number of bytes is not 16-bit audio.
    st.builds(lambda b: {"audio": base64.b64encode(b).decode()}, st.binary(min_size=1, max_size=99)
              .filter(lambda b: len(b) % 2 == 1)),
)


# -- conversation items -------------------------------------------------------------------------
def message(role: str, texts: list[str]) -> dict:
    ctype = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": ctype, "text": t} for t in texts]}


valid_item = st.one_of(
    # At most one part of the longest text: sixteen would be over the message size.
    st.builds(message, st.sampled_from(["user", "assistant"]),
              st.lists(short_text, max_size=limits.MAX_CONTENT_PARTS) | st.just([Long("t" * limits.MAX_TEXT_CHARS)])),
    st.builds(lambda role, t: {"type": "message", "role": role, "content": [
        {"type": "input_audio" if role == "user" else "output_audio", "transcript": t}]},
        st.sampled_from(["user", "assistant"]), short_text),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": st.text(min_size=1, max_size=8),
                           "output": short_text}),
    st.fixed_dictionaries({"type": st.just("function_call"), "name": st.text(min_size=1, max_size=8)},
                          optional={"arguments": st.just('{"x": 1}')}),
)
bad_item_field = st.one_of(
    bad("item", *NOT_OBJECTS, None),
    bad("item.type", "file", "function_call_output", 1),
    bad("item.role", "robot", "", "system", 1, None),
    bad("item.content", "hello", {}, None, [1], [{"type": "image"}],
        [{"type": "input_text", "text": Long("t" * (limits.MAX_TEXT_CHARS + 1))}],
        Many([{"type": "input_text", "text": "x"}] * (limits.MAX_CONTENT_PARTS + 1)),
        [{"type": "input_text"}], [{"type": "input_text", "text": 5}]),
    bad("item.id", Long("i" * 257), 5),
)
message_item = st.builds(message, st.sampled_from(["user", "assistant"]), st.lists(short_text, max_size=2))
invalid_item = with_one_bad(message_item.map(lambda m: {"item": m}), bad_item_field)


# -- responses ----------------------------------------------------------------------------------
valid_response = st.fixed_dictionaries({}, optional={
    "output_modalities": st.sampled_from([["text"], ["audio"]]),
    "max_output_tokens": st.integers(1, 4096) | st.just("inf"),
    "instructions": short_text,
    "metadata": st.dictionaries(st.text(max_size=64), st.text(max_size=20), max_size=limits.MAX_METADATA_PAIRS),
    "conversation": st.sampled_from(["auto", "none"]),
    "tools": tools,
    "tool_choice": st.sampled_from(["auto", "none"]),
})
valid_response_create = st.fixed_dictionaries({}, optional={"response": valid_response})
bad_response_field = st.one_of(
    bad("response", *[v for v in NOT_OBJECTS if v not in ({},)]),
    bad("response.max_output_tokens", 0, 4097, 2 ** 31, 2 ** 40, 10 ** 18, -5, True, "lots", 2.5),
    bad("response.output_modalities", [], ["video"], "text", [None]),
    bad("response.conversation", "new", "", 3),
    bad("response.metadata", {"k": 1}, {str(i): "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}, []),
    bad("response.instructions", Long("i" * (limits.MAX_INSTRUCTIONS_CHARS + 1)), 5),
    bad("response.tools", [{"type": "function"}], "t", Many([{"type": "function", "name": "f"}] * 129)),
    bad("response.tool_choice", "never", {"type": "function", "name": "absent"}, 0),
)
invalid_response_create = with_one_bad(valid_response_create, bad_response_field)
