"""A release's record: what the gateways route by and what the controller steps.

One record per speech service, kept in Redis (hash ``voice:release:state``,
field = service, value = JSON) so every gateway process reads the same weight
and a change needs no restart. ``weight`` is the share (0-100) of new sessions
hashed to the canary pool; ``state`` is where the release stands (the
transition table is in release/machine.py).

Writes are compare-and-set on ``rev``: the controller's loop and an operator's
``abort`` may race, and an abort must never be overwritten by a step computed
from the record before it. The field names here are the wire format shared by
the gateway (reader) and the controller (writer); nothing else defines them."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

SERVICES = ("vad", "asr", "llm", "rag", "tts")
IDLE, PROGRESSING, HOLDING, PROMOTED, ROLLED_BACK, ABORTED = (
    "idle", "progressing", "holding", "promoted", "rolled_back", "aborted")
STATES = (IDLE, PROGRESSING, HOLDING, PROMOTED, ROLLED_BACK, ABORTED)
# The canary was judged bad or pulled: even sessions that started on it are
# sent to stable when they resume (services/gateway/release_view.py).
CANARY_WITHDRAWN = frozenset({ROLLED_BACK, ABORTED})
ACTIVE = frozenset({PROGRESSING, HOLDING})
VERDICTS = ("pass", "fail", "inconclusive")

STATE_KEY = "voice:release:state"
EVENTS_KEY = "voice:release:events"
SAMPLES_KEY = "voice:release:samples"

DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
DEFAULT_INTERVAL_S = 300.0
DEFAULT_HOLD_LIMIT_S = 1800.0


@dataclasses.dataclass
class Release:
    """One service's release. Times are wall-clock seconds (epoch) of the
    controller's injected clock: they are compared across processes."""

    service: str
    weight: float = 0.0
    state: str = IDLE
    step: int = 0                          # index into steps while progressing/holding
    steps: list[float] = dataclasses.field(default_factory=lambda: list(DEFAULT_STEPS))
    interval_s: float = DEFAULT_INTERVAL_S  # time at a step before it is judged
    hold_limit_s: float = DEFAULT_HOLD_LIMIT_S  # inconclusive this long at one step -> aborted
    step_started_at: float = 0.0           # the judge's window starts here
    next_check_at: float = 0.0
    hold_since: float | None = None
    updated_at: float = 0.0
    # Verdicts so far, cumulative for this record (exported as a counter by the gateways).
    decisions: dict[str, int] = dataclasses.field(default_factory=lambda: {v: 0 for v in VERDICTS})
    # The latest verdict, the rule that decided it and when ({"verdict", "rule",
    # "at"}): the canary dashboard shows it (the event log has the values).
    last: dict[str, Any] | None = None
    rev: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Release":
        d: dict[str, Any] = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        rel = cls(**{k: v for k, v in d.items() if k in known})
        if rel.state not in STATES:
            raise ValueError(f"unknown release state {rel.state!r}")
        return rel

    def summary(self) -> str:
        steps = ",".join(f"{s:g}" for s in self.steps)
        return (f"{self.service}: {self.state} weight={self.weight:g}% step={self.step} of [{steps}] "
                f"decisions={self.decisions}")


def parse_all(raw: dict[Any, Any]) -> dict[str, Release]:
    """HGETALL of STATE_KEY -> {service: Release}; a corrupt field is skipped
    (the gateway then falls back to its configured percentage for it)."""
    out: dict[str, Release] = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        try:
            out[name] = Release.from_json(v)
        except (ValueError, TypeError):
            continue
    return out
