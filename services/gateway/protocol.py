"""Client events of the Realtime API: parsing and validation. Every problem
raises ProtocolError with a code and a message that says exactly what was
wrong; the connection turns it into an ``error`` event and carries on.
``session.update`` has its own module (session_update.py), on these readers."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import secrets
from typing import Any, Literal, overload

from services.gateway import limits
from services.gateway import tools as tool_rules
from services.gateway.session import Item

CLIENT_EVENTS = (
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
    "input_audio_buffer.clear", "conversation.item.create", "conversation.item.delete",
    "conversation.item.truncate", "conversation.item.retrieve", "response.create",
    "response.cancel", "output_audio_buffer.clear",
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None,
                 event_id: str | None = None, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.event_id, self.type = code, message, param, event_id, type


# Client JSON is bounded in shape as well as in bytes: deeper nesting crashed
# the decoder (RecursionError), huge integers crashed it too (Python refuses to
# convert over 4300 digits) and non-finite numbers (NaN, 1e309) are not JSON.
MAX_DEPTH = 32
MAX_INT_DIGITS = 18


def parse(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise ProtocolError("message_too_large",
                            f"message of {size} bytes is over the limit of {max_bytes} bytes; "
                            "send audio in smaller appends", event_id=_peek_event_id(raw))
    try:
        ev = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise ProtocolError("invalid_json", f"message is nested more than {MAX_DEPTH} levels deep",
                            event_id=_peek_event_id(raw)) from None
    except _NumberError as exc:
        raise ProtocolError("invalid_json", f"message has an unsupported number: {exc}",
                            event_id=_peek_event_id(raw)) from None
    except (ValueError, UnicodeDecodeError) as exc:   # JSONDecodeError is a ValueError
        raise ProtocolError("invalid_json", f"message is not valid JSON: {exc}",
                            event_id=_peek_event_id(raw)) from None
    if _too_deep(ev):
        raise ProtocolError("invalid_json", f"message is nested more than {MAX_DEPTH} levels deep",
                            event_id=_peek_event_id(raw))
    if not isinstance(ev, dict):
        raise ProtocolError("invalid_event", f"an event must be a JSON object, got {type(ev).__name__}")
    eid = ev.get("event_id")
    if eid is not None and not isinstance(eid, str):
        raise ProtocolError("invalid_type", "'event_id' must be a string", "event_id")
    if eid is not None and len(eid) > limits.MAX_EVENT_ID_CHARS:
        raise ProtocolError("string_above_max_length", f"'event_id' is {len(eid)} characters long; the limit "
                            f"is {limits.MAX_EVENT_ID_CHARS}", "event_id", eid[:limits.MAX_EVENT_ID_CHARS])
    typ = ev.get("type")
    if not isinstance(typ, str) or not typ:
        raise ProtocolError("missing_required_parameter", "the event has no 'type' string", "type", eid)
    if typ not in CLIENT_EVENTS:
        raise ProtocolError("unknown_event_type", f"unknown event type {_short(typ)}", "type", eid)
    return ev


class _NumberError(ValueError):
    pass


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NumberError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _NumberError(f"{text[:40]} is out of range for a number")
    return v


def _constant(text: str) -> float:
    raise _NumberError(f"{text} is not a JSON number")


def _too_deep(value: Any) -> bool:
    """Whether decoded JSON nests more than MAX_DEPTH levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        for c in children:
            if isinstance(c, (dict, list)):
                if d + 1 > MAX_DEPTH:
                    return True
                stack.append((c, d + 1))
    return False


_EVENT_ID = re.compile(r'"event_id"\s*:\s*"((?:[^"\\]|\\.){0,256})"')


def _peek_event_id(raw: str | bytes) -> str | None:
    """The event_id of a message that could not be decoded, if it has one near
    its start or end (where clients put it), so the error can still name it."""
    text = raw if isinstance(raw, str) else raw.decode(errors="replace")
    for part in (text[:4096], text[-4096:]):
        m = _EVENT_ID.search(part)
        if m:
            try:
                return json.loads(f'"{m.group(1)}"')
            except ValueError:
                return None
    return None


def _short(value: Any, most: int = 80) -> str:
    """A client value quoted in an error, cut short: errors must not echo megabytes."""
    text = repr(value)
    return text if len(text) <= most else text[:most] + "..."


def _err(ev: dict, code: str, message: str, param: str | None = None) -> ProtocolError:
    return ProtocolError(code, f"{ev['type']}: {message}", param, ev.get("event_id"))


def _get(ev: dict, obj: dict, key: str, types: tuple, path: str, required: bool = False) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise _err(ev, "missing_required_parameter", f"'{path}' is required", path)
        return None
    v = obj[key]
    if types == (int,) and isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) and bool not in types:
        raise _err(ev, "invalid_type", f"'{path}' must be {_names(types)}, got a boolean", path)
    if not isinstance(v, types):
        raise _err(ev, "invalid_type", f"'{path}' must be {_names(types)}, got {type(v).__name__}", path)
    if isinstance(v, str) and (most := limits.max_chars(path)) is not None and len(v) > most:
        raise _err(ev, "string_above_max_length",
                   f"'{path}' is {len(v)} characters long; the limit is {most}", path)
    return v


def _names(types: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             dict: "an object", list: "an array"}
    return " or ".join(names.get(t, t.__name__) for t in types)


@overload
def _obj(ev: dict, obj: dict, key: str, path: str, required: Literal[True]) -> dict: ...
@overload
def _obj(ev: dict, obj: dict, key: str, path: str, required: bool = False) -> dict | None: ...
def _obj(ev: dict, obj: dict, key: str, path: str, required: bool = False) -> dict | None:
    """An object field; with ``required`` never None (a missing one is an error)."""
    return _get(ev, obj, key, (dict,), path, required)


def _range(ev: dict, v: Any, path: str, lo: float, hi: float) -> None:
    if v is not None and not lo <= v <= hi:
        raise _err(ev, "invalid_value", f"'{path}' must be between {lo} and {hi}, got {v}", path)


MAX_OUTPUT_TOKENS = 4096
def _max_tokens(ev: dict, obj: dict, path: str) -> int | str | None:
    v = obj.get(path.rsplit(".", 1)[-1])
    if v is not None and v != "inf" and (isinstance(v, bool) or not isinstance(v, int)
                                         or not 1 <= v <= MAX_OUTPUT_TOKENS):
        raise _err(ev, "invalid_value", f"'{path}' must be 1..{MAX_OUTPUT_TOKENS} or 'inf', got {v!r}", path)
    return v


def _tools(ev: dict, tools: list, path: str) -> list:
    if len(tools) > limits.MAX_TOOLS:
        raise _err(ev, "array_above_max_length", f"'{path}' has {len(tools)} tools; the limit is "
                   f"{limits.MAX_TOOLS}", path)
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise _err(ev, "invalid_type", f"'{path}[{i}]' must be an object", f"{path}[{i}]")
    size = len(json.dumps(tools))
    if size > limits.MAX_TOOLS_BYTES:
        raise _err(ev, "tools_too_large", f"'{path}' is {size} bytes as JSON; the limit is "
                   f"{limits.MAX_TOOLS_BYTES}", path)
    try:
        return tool_rules.check_tools(tools, path)
    except tool_rules.ToolsError as e:
        raise _err(ev, e.code, e.message, e.param) from None


def _tool_choice(ev: dict, choice: Any, tools: list | None, path: str) -> str | dict:
    try:
        return tool_rules.check_choice(choice, tools, path)
    except tool_rules.ToolsError as e:
        raise _err(ev, e.code, e.message, e.param) from None


def _metadata(ev: dict, md: dict, path: str) -> dict[str, str]:
    if len(md) > limits.MAX_METADATA_PAIRS:
        raise _err(ev, "invalid_value", f"'{path}' has {len(md)} pairs; the limit is "
                   f"{limits.MAX_METADATA_PAIRS}", path)
    for k, v in md.items():
        if not isinstance(v, str):
            raise _err(ev, "invalid_type", f"'{path}' values must be strings", path)
        if len(k) > limits.MAX_METADATA_KEY_CHARS or len(v) > limits.MAX_METADATA_VALUE_CHARS:
            raise _err(ev, "string_above_max_length", f"'{path}' keys are limited to "
                       f"{limits.MAX_METADATA_KEY_CHARS} characters and values to "
                       f"{limits.MAX_METADATA_VALUE_CHARS}", path)
    return dict(md)


def _modalities(ev: dict, mods: list, path: str) -> list[str]:
    if not mods or any(m not in ("audio", "text") for m in mods):
        raise _err(ev, "invalid_value", f"'{path}' must be ['audio'] or ['text'], got {_short(mods)}", path)
    return ["audio"] if "audio" in mods else ["text"]


def append_audio(ev: dict) -> bytes:
    audio = _get(ev, ev, "audio", (str,), "audio", required=True)
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _err(ev, "invalid_base64", f"'audio' is not valid base64 ({exc})", "audio") from exc
    if len(pcm) % 2:
        raise _err(ev, "invalid_audio_format",
                   f"'audio' decodes to {len(pcm)} bytes, an odd count: audio/pcm is 16-bit, "
                   "2 bytes per sample", "audio")
    return pcm


def item_id(ev: dict) -> str:
    return _get(ev, ev, "item_id", (str,), "item_id", required=True)


def truncate(ev: dict) -> tuple[str, int, int]:
    iid = item_id(ev)
    ci = _get(ev, ev, "content_index", (int,), "content_index") or 0
    end = _get(ev, ev, "audio_end_ms", (int,), "audio_end_ms", required=True)
    if end < 0:
        raise _err(ev, "invalid_value", f"'audio_end_ms' must be >= 0, got {end}", "audio_end_ms")
    if ci != 0:
        raise _err(ev, "invalid_value", f"'content_index' {ci} does not exist: items have one content part",
                   "content_index")
    return iid, ci, end


def item_create(ev: dict) -> tuple[Item, str | None]:
    it = _obj(ev, ev, "item", "item", required=True)
    prev = _get(ev, ev, "previous_item_id", (str,), "previous_item_id")
    typ = _get(ev, it, "type", (str,), "item.type") or "message"
    iid = _get(ev, it, "id", (str,), "item.id") or new_id("item")
    if typ == "message":
        role = _get(ev, it, "role", (str,), "item.role", required=True)
        if role not in ("user", "assistant", "system"):
            raise _err(ev, "invalid_value", f"'item.role' must be user, assistant or system, got {role!r}",
                       "item.role")
        content = _get(ev, it, "content", (list,), "item.content", required=True)
        if len(content) > limits.MAX_CONTENT_PARTS:
            raise _err(ev, "array_above_max_length", f"'item.content' has {len(content)} parts; the limit is "
                       f"{limits.MAX_CONTENT_PARTS}", "item.content")
        allowed = {"user": ("input_text", "input_audio"), "system": ("input_text",),
                   "assistant": ("output_text", "output_audio", "text")}[role]
        parts = []
        for i, c in enumerate(content):
            p = f"item.content[{i}]"
            if not isinstance(c, dict):
                raise _err(ev, "invalid_type", f"'{p}' must be an object", p)
            ctype = _get(ev, c, "type", (str,), p + ".type", required=True)
            if ctype not in allowed:
                raise _err(ev, "invalid_value", f"'{p}.type' {ctype!r} is not allowed for role {role}; "
                           f"use {' or '.join(allowed)}", p + ".type")
            if ctype in ("input_text", "output_text", "text"):
                parts.append({"type": ctype, "text": _get(ev, c, "text", (str,), p + ".text", required=True)})
            else:
                parts.append({"type": ctype, "transcript": _get(ev, c, "transcript", (str,), p + ".transcript") or ""})
        return Item(id=iid, role=role, content=parts), prev
    if typ == "function_call_output":
        call_id = _get(ev, it, "call_id", (str,), "item.call_id", required=True)
        output = _get(ev, it, "output", (str,), "item.output", required=True)
        return Item(id=iid, type=typ, call_id=call_id, output=output), prev
    if typ == "function_call":
        return Item(id=iid, type=typ, call_id=_get(ev, it, "call_id", (str,), "item.call_id") or new_id("call"),
                    name=_get(ev, it, "name", (str,), "item.name", required=True),
                    arguments=_get(ev, it, "arguments", (str,), "item.arguments") or ""), prev
    raise _err(ev, "invalid_value", f"'item.type' {typ!r} is not supported; use message, function_call "
               "or function_call_output", "item.type")


@dataclasses.dataclass
class ResponseOptions:
    instructions: str | None = None
    modalities: list[str] | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    in_conversation: bool = True
    max_output_tokens: int | str | None = None   # None: the session's; "inf": the gateway's limit
    tools: list | None = None                     # None: the session's
    tool_choice: str | dict | None = None         # None: the session's


def response_create(ev: dict, session_tools: list | None = None) -> ResponseOptions:
    """The options of one response; a named tool_choice must name one of
    the response's tools (or, without them, the session's)."""
    r = _obj(ev, ev, "response", "response") or {}
    opts = ResponseOptions()
    opts.instructions = _get(ev, r, "instructions", (str,), "response.instructions")
    if (mods := _get(ev, r, "output_modalities", (list,), "response.output_modalities")) is not None:
        opts.modalities = _modalities(ev, mods, "response.output_modalities")
    conv = _get(ev, r, "conversation", (str,), "response.conversation")
    if conv is not None and conv not in ("auto", "none"):
        raise _err(ev, "invalid_value", f"'response.conversation' must be 'auto' or 'none', got {conv!r}",
                   "response.conversation")
    opts.in_conversation = conv != "none"
    md = _obj(ev, r, "metadata", "response.metadata")
    if md is not None:
        opts.metadata = _metadata(ev, md, "response.metadata")
    opts.max_output_tokens = _max_tokens(ev, r, "response.max_output_tokens")
    if (v := _get(ev, r, "tools", (list,), "response.tools")) is not None:
        opts.tools = _tools(ev, v, "response.tools")
    if (v := _get(ev, r, "tool_choice", (str, dict), "response.tool_choice")) is not None:
        known = opts.tools if opts.tools is not None else session_tools
        opts.tool_choice = _tool_choice(ev, v, known, "response.tool_choice")
    return opts
