"""What a response looks like to the client and in the history, as pure
functions: the ``response`` object of response.created/done, the content
part, the item's text (only the words heard, once truncated) and its
truncation. response.py decides when; this decides what."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from services.gateway import events
from services.gateway.session import Clause, Item, heard_text

if TYPE_CHECKING:
    from services.gateway.response import Response


def response_object(resp: "Response", status: str, details: dict | None = None) -> dict[str, Any]:
    """The ``response`` of response.created (in_progress: no output, no
    usage) and response.done (with timings, sources and trace id in metadata)."""
    md = dict(resp.metadata)
    if status != "in_progress":
        md["timings"] = resp.timings.metadata()
        if resp.passages:
            md["sources"] = json.dumps([{"source": p.source, "title": p.title,
                                         "score": round(p.score, 4)} for p in resp.passages])
        if resp.trace_id:
            md["trace_id"] = resp.trace_id
    cfg = resp.conv.state.config
    return events.response_obj(
        resp.id, status, output=[resp.item.wire()] if status != "in_progress" else [],
        modalities=resp.modalities, status_details=details,
        usage=events.usage(resp.usage.prompt_tokens, resp.usage.completion_tokens,
                           resp.usage.cached_prompt_tokens)
        if status != "in_progress" else None,
        metadata=md, conversation_id=resp.conv.conversation_id if resp.in_conversation else None,
        voice=cfg.voice or "default", rate=resp.rate, max_output_tokens=cfg.max_output_tokens)


def content_part(audio_out: bool, text: str) -> dict[str, str]:
    """The response's content part (audio with its transcript, or text)."""
    return {"type": "audio", "transcript": text} if audio_out else {"type": "text", "text": text}


def item_transcript(item: Item, audio_out: bool, text: str) -> str:
    """The item's words: the generated text, or for audio the clauses
    spoken, only those heard once the item is truncated."""
    if not audio_out:
        return text
    if item.truncated_ms is not None:
        return heard_text(item.clauses, item.truncated_ms)
    return " ".join(c.text for c in item.clauses)


def set_item_content(item: Item, audio_out: bool, text: str) -> None:
    item.content = ([{"type": "output_audio", "transcript": text}] if audio_out
                    else [{"type": "output_text", "text": text}])


def truncate_end(audio_end_ms: float, sent_ms: float) -> float:
    """A truncate's position: clamped to the audio sent, never rejected for
    being too large; whole milliseconds."""
    return float(int(max(0.0, min(float(audio_end_ms), sent_ms))))


def truncate_item(item: Item, end_ms: float) -> None:
    """History keeps only the heard words; the item is marked truncated."""
    item.truncated_ms = end_ms
    text = heard_text(item.clauses, end_ms)
    item.content = [{"type": "output_audio", "transcript": text}]


def drop_partial(partial: Clause | None, sent_ms: float) -> float:
    """Where a failed answer's item is cut: at the audio sent, with a clause
    whose synthesis broke off counted as unspoken (how many of its words its
    audio holds is unknown; better a spoken word missing from the history
    than an unspoken one the assistant later believes it said)."""
    return min(sent_ms, partial.start_ms) if partial is not None else sent_ms
