"""Server event builders (Realtime API GA shapes). Every event gets an event_id."""
from __future__ import annotations

from typing import Any

from services.gateway.protocol import ProtocolError, new_id


def ev(type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "event_id": new_id("event"), **fields}


def error(code: str, message: str, *, param: str | None = None, event_id: str | None = None,
          type: str = "invalid_request_error") -> dict[str, Any]:
    return ev("error", error={"type": type, "code": code, "message": message, "param": param,
                              "event_id": event_id})


def server_busy(message: str, retry_after_s: float) -> dict[str, Any]:
    """The one event a refused connection gets. ``retry_after_s`` is our
    extension (like HTTP's Retry-After): when a retry is worth trying."""
    event = error("server_busy", message, type="server_error")
    event["error"]["retry_after_s"] = retry_after_s
    return event


def from_protocol_error(e: ProtocolError) -> dict[str, Any]:
    return error(e.code, e.message, param=e.param, event_id=e.event_id, type=e.type)


def response_obj(response_id: str, status: str, *, output: list[dict[str, Any]] | None = None,
                 modalities: list[str], status_details: dict[str, Any] | None = None,
                 usage: dict[str, Any] | None = None, metadata: dict[str, str] | None = None,
                 conversation_id: str | None, voice: str = "default", rate: int = 24000,
                 max_output_tokens: int | str = "inf") -> dict[str, Any]:
    return {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "status_details": status_details,
        "output": output or [],
        "conversation_id": conversation_id,
        "output_modalities": modalities,
        "max_output_tokens": max_output_tokens,
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": rate}, "voice": voice}},
        "usage": usage,
        "metadata": metadata or None,
    }


def usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": cached_tokens},
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }
