"""``session.update``: the session's configuration from a client event, checked
field by field with the readers of protocol.py (every problem a
ProtocolError naming the field)."""
from __future__ import annotations

import dataclasses
from typing import Any

from services.gateway.protocol import (
    _err, _get, _max_tokens, _modalities, _obj, _range, _short, _tool_choice, _tools,
)
from services.gateway.session import (
    EAGERNESS, SUPPORTED_INPUT_RATES, SUPPORTED_OUTPUT_RATES, SessionConfig, TurnDetection,
)


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
    if "noise_reduction" in inp:
        cfg.noise_reduction = _noise_reduction(ev, inp["noise_reduction"])
    if "turn_detection" in inp:
        cfg.turn_detection = _turn_detection(ev, inp["turn_detection"], cfg.turn_detection or defaults)
    if (r := _obj(ev, s, "retrieval", "session.retrieval")) is not None:
        if (v := _get(ev, r, "enabled", (bool,), "session.retrieval.enabled")) is not None:
            cfg.retrieval_enabled = v
        if (v := _get(ev, r, "k", (int,), "session.retrieval.k")) is not None:
            _range(ev, v, "session.retrieval.k", 1, 20)
            cfg.retrieval_k = v
    if (v := _max_tokens(ev, s, "session.max_output_tokens")) is not None:
        cfg.max_output_tokens = v
    if (v := _get(ev, s, "tools", (list,), "session.tools")) is not None:
        cfg.tools = _tools(ev, v, "session.tools")
    if (v := _get(ev, s, "tool_choice", (str, dict), "session.tool_choice")) is not None:
        cfg.tool_choice = _tool_choice(ev, v, cfg.tools, "session.tool_choice")
    elif isinstance(cfg.tool_choice, dict) and "tools" in s:
        # New tools without the named one: the choice must not point at nothing.
        _tool_choice(ev, cfg.tool_choice, cfg.tools, "session.tool_choice")
    return cfg, resume


NOISE_REDUCTION = ("near_field", "far_field")


def _noise_reduction(ev: dict, v: object) -> str | None:
    """null, or {"type": "near_field" | "far_field"} (what the microphone is:
    near_field turns the session's echo canceller off)."""
    path = "session.audio.input.noise_reduction"
    if v is None:
        return None
    typ = v.get("type") if isinstance(v, dict) else None
    if typ not in NOISE_REDUCTION:
        raise _err(ev, "invalid_value", f"'{path}' must be null or {{\"type\": \"near_field\" | "
                   f"\"far_field\"}}, got {v!r}", path)
    return typ


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


def _turn_detection(ev: dict, td: Any, base: TurnDetection) -> TurnDetection | None:
    path = "session.audio.input.turn_detection"
    if td is None:
        return None
    if not isinstance(td, dict):
        raise _err(ev, "invalid_type", f"'{path}' must be an object or null", path)
    typ = td.get("type", "server_vad")
    if typ not in ("server_vad", "semantic_vad"):
        raise _err(ev, "invalid_value", f"'{path}.type' {_short(typ)} is not supported; use 'server_vad', "
                   "'semantic_vad' or null", path + ".type")
    out = dataclasses.replace(base, type=typ)
    if (v := _get(ev, td, "eagerness", (str,), path + ".eagerness")) is not None:
        if typ != "semantic_vad" or v not in EAGERNESS:
            raise _err(ev, "invalid_value", f"'{path}.eagerness' must be one of {list(EAGERNESS)} "
                       f"with type 'semantic_vad', got {v!r} with {typ!r}", path + ".eagerness")
        out.eagerness = v
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
