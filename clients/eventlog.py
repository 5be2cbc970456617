"""Server events as received: each with its monotonic arrival time and its
position in the log, so tests and benchmarks can ask "what came after X, and
when". Pure data; the clients add the waiting (asyncio or threads)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

Predicate = Callable[["ServerEvent"], bool]


@dataclasses.dataclass(frozen=True)
class ServerEvent:
    type: str
    data: dict[str, Any]
    t: float          # time.monotonic() when the message was read off the socket
    index: int        # position in the log

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __repr__(self) -> str:  # audio deltas would flood assertion messages
        short = {k: (v if not isinstance(v, str) or len(v) < 80 else f"<{len(v)} chars>")
                 for k, v in self.data.items() if k != "type"}
        return f"{self.type}@{self.t:.3f}{short}"


def matches(ev: ServerEvent, type_: str | tuple[str, ...] | None, where: Predicate | None) -> bool:
    if type_ is not None:
        if isinstance(type_, str) and ev.type != type_:
            return False
        if isinstance(type_, tuple) and ev.type not in type_:
            return False
    return where is None or where(ev)


class EventLog:
    """Append-only list of server events; queries never block."""

    def __init__(self) -> None:
        self.events: list[ServerEvent] = []

    def add(self, data: dict[str, Any], t: float) -> ServerEvent:
        ev = ServerEvent(str(data.get("type", "")), data, t, len(self.events))
        self.events.append(ev)
        return ev

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[ServerEvent]:
        return iter(list(self.events))

    def find(self, type_: str | tuple[str, ...] | None = None, where: Predicate | None = None,
             since: int = 0) -> ServerEvent | None:
        """First matching event at index >= since."""
        for ev in self.events[since:]:
            if matches(ev, type_, where):
                return ev
        return None

    def all(self, type_: str | tuple[str, ...] | None = None, where: Predicate | None = None,
            since: int = 0) -> list[ServerEvent]:
        return [ev for ev in self.events[since:] if matches(ev, type_, where)]

    def types(self, since: int = 0, skip_audio: bool = True) -> list[str]:
        """Event types in order (audio/transcript deltas left out: they'd swamp a diff)."""
        noisy = {"response.output_audio.delta", "response.output_audio_transcript.delta",
                 "conversation.item.input_audio_transcription.delta", "response.output_text.delta"}
        return [e.type for e in self.events[since:] if not (skip_audio and e.type in noisy)]

    def errors(self, since: int = 0) -> list[ServerEvent]:
        return self.all("error", since=since)
