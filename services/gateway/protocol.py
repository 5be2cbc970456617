"""Client events of the Realtime API: parsing and validation. Every problem
raises ProtocolError with a code and a message that says exactly what was
wrong; the connection turns it into an ``error`` event and carries on."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import secrets
from typing import Any

from services.gateway.session import (
    SUPPORTED_INPUT_RATES, SUPPORTED_OUTPUT_RATES, Item, SessionConfig, TurnDetection,
)

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


def parse(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        eid = _peek_event_id(raw)
        raise ProtocolError("message_too_large",
                            f"message of {size} bytes is over the limit of {max_bytes} bytes; "
                            "send audio in smaller appends", event_id=eid)
    try:
        ev = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_json", f"message is not valid JSON: {exc}") from exc
    if not isinstance(ev, dict):
        raise ProtocolError("invalid_event", f"an event must be a JSON object, got {type(ev).__name__}")
    eid = ev.get("event_id")
    if eid is not None and not isinstance(eid, str):
        raise ProtocolError("invalid_type", "'event_id' must be a string", "event_id")
    typ = ev.get("type")
    if not isinstance(typ, str) or not typ:
        raise ProtocolError("missing_required_parameter", "the event has no 'type' string", "type", eid)
    if typ not in CLIENT_EVENTS:
        raise ProtocolError("unknown_event_type", f"unknown event type '{typ}'", "type", eid)
    return ev


def _peek_event_id(raw: str | bytes) -> str | None:
    """The event_id of an oversized message, without parsing all of it (it is
    near the start or near the end, depending on the client's key order)."""
    text = raw if isinstance(raw, str) else raw.decode(errors="replace")
    for part in (text[:4096], text[-4096:]):
        key = part.find('"event_id"')
        if key < 0:
            continue
        start = part.find('"', part.find(":", key) + 1)
        end = part.find('"', start + 1)
        if start > 0 and end > start:
            return part[start + 1:end]
    return None


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
    return v


def _names(types: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             dict: "an object", list: "an array"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _obj(ev: dict, obj: dict, key: str, path: str, required: bool = False) -> dict | None:
    return _get(ev, obj, key, (dict,), path, required)


def _rate(ev: dict, fmt: dict, path: str, allowed: tuple[int, ...]) -> int | None:
    typ = _get(ev, fmt, "type", (str,), path + ".type")
    if typ is not None and typ != "audio/pcm":
        raise _err(ev, "unsupported_audio_format",
                   f"'{path}.type' {typ!r} is not supported; use 'audio/pcm'", path + ".type")
    rate = _get(ev, fmt, "rate", (int,), path + ".rate")
    if rate is not None and rate not in allowed:
        raise _err(ev, "unsupported_audio_format",
                   f"'{path}.rate' {rate} Hz is not supported; use one of {list(allowed)}", path + ".rate")
    return rate


def _range(ev: dict, v: Any, path: str, lo: float, hi: float) -> None:
    if v is not None and not lo <= v <= hi:
        raise _err(ev, "invalid_value", f"'{path}' must be between {lo} and {hi}, got {v}", path)


def session_update(ev: dict, current: SessionConfig, defaults: TurnDetection) -> tuple[SessionConfig, str | None]:
    """The new configuration (validated as a whole before anything changes) and
    the id of a stored session to resume, if the update names one."""
    s = _obj(ev, ev, "session", "session", required=True)
    cfg = dataclasses.replace(current)
    typ = _get(ev, s, "type", (str,), "session.type")
    if typ is not None and typ != "realtime":
        raise _err(ev, "invalid_value", f"'session.type' must be 'realtime', got {typ!r}", "session.type")
    resume = _get(ev, s, "id", (str,), "session.id")
    if (v := _get(ev, s, "model", (str,), "session.model")) is not None:
        cfg.model = v
    if (v := _get(ev, s, "instructions", (str,), "session.instructions")) is not None:
        cfg.instructions = v
    if (mods := _get(ev, s, "output_modalities", (list,), "session.output_modalities")) is not None:
        cfg.output_modalities = _modalities(ev, mods, "session.output_modalities")
    audio = _obj(ev, s, "audio", "session.audio") or {}
    inp = _obj(ev, audio, "input", "session.audio.input") or {}
    out = _obj(ev, audio, "output", "session.audio.output") or {}
    if (fmt := _obj(ev, inp, "format", "session.audio.input.format")) is not None:
        cfg.input_rate = _rate(ev, fmt, "session.audio.input.format", SUPPORTED_INPUT_RATES) or cfg.input_rate
    if (fmt := _obj(ev, out, "format", "session.audio.output.format")) is not None:
        cfg.output_rate = _rate(ev, fmt, "session.audio.output.format", SUPPORTED_OUTPUT_RATES) or cfg.output_rate
    if (v := _get(ev, out, "voice", (str,), "session.audio.output.voice")) is not None:
        cfg.voice = "" if v == "default" else v
    if (v := _get(ev, out, "speed", (int, float), "session.audio.output.speed")) is not None:
        _range(ev, v, "session.audio.output.speed", 0.25, 1.5)
        cfg.speed = float(v)
    if "turn_detection" in inp:
        cfg.turn_detection = _turn_detection(ev, inp["turn_detection"], cfg.turn_detection or defaults)
    if (r := _obj(ev, s, "retrieval", "session.retrieval")) is not None:
        if (v := _get(ev, r, "enabled", (bool,), "session.retrieval.enabled")) is not None:
            cfg.retrieval_enabled = v
        if (v := _get(ev, r, "k", (int,), "session.retrieval.k")) is not None:
            _range(ev, v, "session.retrieval.k", 1, 20)
            cfg.retrieval_k = v
    if "max_output_tokens" in s and s["max_output_tokens"] is not None:
        v = s["max_output_tokens"]
        if v != "inf" and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096):
            raise _err(ev, "invalid_value", "'session.max_output_tokens' must be 1..4096 or 'inf'",
                       "session.max_output_tokens")
        cfg.max_output_tokens = v
    if (v := _get(ev, s, "tools", (list,), "session.tools")) is not None:
        cfg.tools = v
    if (v := _get(ev, s, "tool_choice", (str,), "session.tool_choice")) is not None:
        cfg.tool_choice = v
    return cfg, resume


def _modalities(ev: dict, mods: list, path: str) -> list[str]:
    if not mods or any(m not in ("audio", "text") for m in mods):
        raise _err(ev, "invalid_value", f"'{path}' must be ['audio'] or ['text'], got {mods!r}", path)
    return ["audio"] if "audio" in mods else ["text"]


def _turn_detection(ev: dict, td: Any, base: TurnDetection) -> TurnDetection | None:
    path = "session.audio.input.turn_detection"
    if td is None:
        return None
    if not isinstance(td, dict):
        raise _err(ev, "invalid_type", f"'{path}' must be an object or null", path)
    typ = td.get("type", "server_vad")
    if typ != "server_vad":
        raise _err(ev, "invalid_value", f"'{path}.type' {typ!r} is not supported; use 'server_vad' or null",
                   path + ".type")
    out = dataclasses.replace(base)
    if (v := _get(ev, td, "threshold", (int, float), path + ".threshold")) is not None:
        _range(ev, v, path + ".threshold", 0.01, 0.99)
        out.threshold = float(v)
    for key, lo, hi in (("prefix_padding_ms", 0, 2000), ("silence_duration_ms", 100, 5000),
                        ("min_interrupt_ms", 0, 5000), ("false_interruption_timeout_ms", 0, 10000)):
        if (v := _get(ev, td, key, (int,), f"{path}.{key}")) is not None:
            _range(ev, v, f"{path}.{key}", lo, hi)
            setattr(out, key, v)
    for key in ("create_response", "interrupt_response", "preemptive_generation"):
        if (v := _get(ev, td, key, (bool,), f"{path}.{key}")) is not None:
            setattr(out, key, v)
    return out


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
    max_output_tokens: int | None = None


def response_create(ev: dict) -> ResponseOptions:
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
        if any(not isinstance(v, str) for v in md.values()):
            raise _err(ev, "invalid_type", "'response.metadata' values must be strings", "response.metadata")
        opts.metadata = dict(md)
    mot = r.get("max_output_tokens")
    if isinstance(mot, int) and not isinstance(mot, bool):
        opts.max_output_tokens = mot
    return opts
