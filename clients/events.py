"""Client events of the Realtime protocol (GA shape), built as plain dicts.

Shared by the asyncio and the blocking client so both send byte-identical
events. Every builder leaves ``event_id`` to the sender, which numbers events
so that an ``error`` can be matched to the event that caused it."""
from __future__ import annotations

import base64
from typing import Any

DEFAULT_RATE = 24000  # the protocol's default PCM rate


def audio_format(rate: int = DEFAULT_RATE) -> dict[str, Any]:
    return {"type": "audio/pcm", "rate": rate}


def server_vad(threshold: float | None = None, prefix_padding_ms: int | None = None,
               silence_duration_ms: int | None = None, create_response: bool = True,
               interrupt_response: bool = True) -> dict[str, Any]:
    """A ``turn_detection`` block; unset numbers keep the server's defaults."""
    td: dict[str, Any] = {"type": "server_vad", "create_response": create_response,
                          "interrupt_response": interrupt_response}
    for k, v in (("threshold", threshold), ("prefix_padding_ms", prefix_padding_ms),
                 ("silence_duration_ms", silence_duration_ms)):
        if v is not None:
            td[k] = v
    return td


def semantic_vad(eagerness: str = "auto", create_response: bool = True,
                 interrupt_response: bool = True) -> dict[str, Any]:
    """A ``turn_detection`` block asking for semantic end-of-turn detection."""
    return {"type": "semantic_vad", "eagerness": eagerness, "create_response": create_response,
            "interrupt_response": interrupt_response}


def session_config(*, input_rate: int = DEFAULT_RATE, output_rate: int = DEFAULT_RATE,
                   instructions: str | None = None, output_modalities: list[str] | None = None,
                   turn_detection: dict[str, Any] | None | bool = True,
                   voice: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``session`` object of ``session.update``.

    ``turn_detection=True`` means server VAD with the server's defaults,
    ``None``/``False`` means manual turns (sent as JSON null), a dict is sent as is."""
    inp: dict[str, Any] = {"format": audio_format(input_rate)}
    if turn_detection is True:
        inp["turn_detection"] = server_vad()
    elif turn_detection in (None, False):
        inp["turn_detection"] = None
    else:
        inp["turn_detection"] = turn_detection
    out: dict[str, Any] = {"format": audio_format(output_rate)}
    if voice:
        out["voice"] = voice
    s: dict[str, Any] = {"type": "realtime", "audio": {"input": inp, "output": out}}
    if instructions is not None:
        s["instructions"] = instructions
    if output_modalities is not None:
        s["output_modalities"] = output_modalities
    return s | extra


def session_update(session: dict[str, Any]) -> dict[str, Any]:
    return {"type": "session.update", "session": session}


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def append(pcm: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": b64(pcm)}


def commit() -> dict[str, Any]:
    return {"type": "input_audio_buffer.commit"}


def clear_input() -> dict[str, Any]:
    return {"type": "input_audio_buffer.clear"}


def user_text(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": text}]}}


def delete_item(item_id: str) -> dict[str, Any]:
    return {"type": "conversation.item.delete", "item_id": item_id}


def truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> dict[str, Any]:
    return {"type": "conversation.item.truncate", "item_id": item_id,
            "content_index": content_index, "audio_end_ms": int(audio_end_ms)}


def response_create(output_modalities: list[str] | None = None,
                    instructions: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if output_modalities is not None:
        r["output_modalities"] = output_modalities
    if instructions is not None:
        r["instructions"] = instructions
    return {"type": "response.create", **({"response": r} if r else {})}


def response_cancel(response_id: str | None = None) -> dict[str, Any]:
    return {"type": "response.cancel", **({"response_id": response_id} if response_id else {})}


def clear_output() -> dict[str, Any]:
    return {"type": "output_audio_buffer.clear"}


def decode_audio(event: dict[str, Any]) -> bytes:
    """PCM of a ``response.output_audio.delta`` event."""
    return base64.b64decode(event.get("delta", ""))
