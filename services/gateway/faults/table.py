"""Which faults are active: pure state over the clock (no tasks, no IO).

A fault names a service, a kind and the share of calls it hits (``rate``),
and has an end: it expires by itself, read lazily at each use, so a drill
that crashes (or an operator who forgets) cannot leave the system broken.
One fault per service at a time; setting another replaces it.

Kinds, as a call sees them (calls.py applies them):
- ``latency``: the first message of a call (every reply of a VAD/ASR stream)
  comes ``latency_ms`` late;
- ``error``: the call fails at once with UNAVAILABLE;
- ``reset``: the call fails with UNAVAILABLE after ``after_messages``
  messages (a connection reset mid-answer);
- ``hang``: the call is accepted and never answers (until the gateway's
  deadlines give up on it).
For ``redis`` (the session store, store.py) every kind but latency is an
operation failing as with Redis unreachable.

A fault may be scoped to one ``variant`` of a speech service (``canary`` or
``stable``, docs/releases.md): the canary drill breaks only the canary, as a
bad release would, and the release judge must tell it from stable."""
from __future__ import annotations

import dataclasses
import random
from typing import Any

SERVICES = ("vad", "asr", "llm", "rag", "tts", "redis")
KINDS = ("latency", "error", "reset", "hang")
VARIANTS = ("stable", "canary")


class FaultRequestError(ValueError):
    """A fault request that cannot be applied; the message says why."""


@dataclasses.dataclass(frozen=True)
class Fault:
    service: str
    kind: str
    until: float                  # clock time at which it ends by itself
    rate: float = 1.0             # share of calls hit, 0..1
    latency_ms: int = 0           # latency
    after_messages: int = 1       # reset: messages that get through first
    variant: str = ""             # "" = every call; else only calls to that variant's pool
    shared: bool = False          # read from Redis (shared.py): every gateway of the fleet has it
    id: str = ""                  # names one setting of a fault across the fleet (shared.py)

    def hits(self, variant: str) -> bool:
        return not self.variant or self.variant == variant

    def wire(self, now: float) -> dict[str, Any]:
        return {"service": self.service, "kind": self.kind, "rate": self.rate, "variant": self.variant or "all",
                "latency_ms": self.latency_ms, "after_messages": self.after_messages,
                "remaining_s": round(max(0.0, self.until - now), 1), "shared": self.shared}


def parse(body: Any, now: float, max_duration_s: float) -> Fault:
    """A Fault from an admin request body, or FaultRequestError."""
    if not isinstance(body, dict):
        raise FaultRequestError("the body must be a JSON object")
    unknown = set(body) - {"service", "kind", "rate", "latency_ms", "after_messages", "duration_s",
                          "variant"}
    if unknown:
        raise FaultRequestError(f"unknown fields: {', '.join(sorted(unknown))}")
    service, kind = body.get("service"), body.get("kind")
    if service not in SERVICES:
        raise FaultRequestError(f"'service' must be one of {', '.join(SERVICES)}")
    if kind not in KINDS:
        raise FaultRequestError(f"'kind' must be one of {', '.join(KINDS)}")
    rate = _number(body, "rate", 1.0, 0.0, 1.0)
    duration = _number(body, "duration_s", None, 1.0, max_duration_s)
    latency = int(_number(body, "latency_ms", 0, 0, 60_000))
    if kind == "latency" and latency <= 0:
        raise FaultRequestError("a latency fault needs 'latency_ms' > 0")
    after = int(_number(body, "after_messages", 1, 0, 10_000))
    variant = body.get("variant", "")
    if variant not in ("", *VARIANTS):
        raise FaultRequestError(f"'variant' must be one of {', '.join(VARIANTS)} (or absent: every call), "
                                f"got {variant!r}")
    if variant and service == "redis":
        raise FaultRequestError("'variant' applies to the speech services; the session store has none")
    return Fault(service, kind, now + duration, rate, latency, after, variant)


def _number(body: dict, key: str, default: float | None, lo: float, hi: float) -> float:
    v = body.get(key, default)
    if v is None:
        raise FaultRequestError(f"'{key}' is required ({lo:g}..{hi:g}): every fault ends by itself")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise FaultRequestError(f"'{key}' must be a number in {lo:g}..{hi:g}, got {v!r}")
    return float(v)


class FaultTable:
    def __init__(self, clock: Any, rng: random.Random | None = None) -> None:
        self.clock = clock
        self._rng = rng or random.Random()
        self._faults: dict[str, Fault] = {}
        self._changed_at: dict[str, float] = {}   # service -> clock time of its last set/clear here

    @property
    def active(self) -> bool:
        """False when no fault was set: callers then do nothing else."""
        return bool(self._faults)

    def set(self, fault: Fault) -> None:
        self._faults[fault.service] = fault
        self._changed_at[fault.service] = self.clock.now()

    def sync(self, shared: list[Fault], read_at: float) -> None:
        """Take ``shared``, read from Redis from clock time ``read_at`` on, as
        the fleet's faults (shared.py): shared faults not in it have ended or
        been withdrawn elsewhere; a fault set on this gateway alone (Redis was
        unreachable) stays unless a shared one of the same service replaces
        it. A service set or cleared here since ``read_at`` is left as it is
        (the read may predate that change). A fault already held keeps its
        object: a stream under a fault tells the fault's end by identity
        (calls.py), and a fresh copy every read would end a hang each second."""
        fresh = {n for n, t in self._changed_at.items() if t >= read_at}
        out = {n: f for n, f in self._faults.items() if not f.shared or n in fresh}
        for f in shared:
            if f.service in fresh:
                continue
            held = self._faults.get(f.service)
            out[f.service] = held if held is not None and held.id and held.id == f.id else f
        self._faults = out

    def clear(self, service: str | None = None) -> list[str]:
        """End one service's fault, or all; the services whose fault ended."""
        names = [service] if service is not None else list(self._faults)
        now = self.clock.now()
        for n in [service] if service is not None else SERVICES:
            self._changed_at[n] = now
        return [n for n in names if self._faults.pop(n, None) is not None]

    def current(self) -> list[Fault]:
        self._expire(self.clock.now())
        return list(self._faults.values())

    def peek(self, service: str, variant: str = "stable") -> Fault | None:
        """The fault set for ``service``'s ``variant`` now (not drawn at its rate)."""
        f = self._faults.get(service)
        if f is not None and self.clock.now() >= f.until:
            self._faults.pop(service, None)
            return None
        return f if f is not None and f.hits(variant) else None

    def pick(self, service: str, variant: str = "stable") -> Fault | None:
        """The fault this call of ``service``'s ``variant`` suffers, if any (drawn at ``rate``)."""
        f = self.peek(service, variant)
        if f is None:
            return None
        return f if f.rate >= 1.0 or self._rng.random() < f.rate else None

    def _expire(self, now: float) -> None:
        for name, f in list(self._faults.items()):
            if now >= f.until:
                del self._faults[name]
