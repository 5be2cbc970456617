"""One turn, as the judge sees it: which services served it from their canary,
its latencies and whether it failed. The gateway appends one per ended turn to
a capped Redis stream (SAMPLES_KEY); the controller reads a window of them and
splits it per variant of the service under release.

The encoding is one compact JSON field per stream entry: a busy gateway writes
thousands a minute, and the stream's length cap keeps it bounded."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

# Stream cap (XADD MAXLEN ~): at 10 turns/s this keeps the last ~80 min.
SAMPLES_MAXLEN = 50_000
# Sample field -> short wire key.
_WIRE = {"ts": "t", "canary": "c", "v2v_ms": "v", "asr_final_ms": "a", "llm_first_token_ms": "l",
         "tts_first_audio_ms": "s", "churn": "h", "failed": "f"}
# Decimals kept on the wire: latencies to 0.1 ms, a churn share to 0.001, time to 1 ms.
_DIGITS = {"ts": 3, "churn": 3}
LATENCIES = ("v2v_ms", "asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms")


@dataclasses.dataclass
class Sample:
    ts: float                              # wall-clock seconds when the turn ended
    canary: frozenset[str] = frozenset()   # services this turn's session uses the canary of
    v2v_ms: float | None = None            # last voiced sample -> first audio sent
    asr_final_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_audio_ms: float | None = None
    churn: float | None = None             # share of the turn's ASR interims that rewrote shown words
    failed: bool = False

    def variant(self, service: str) -> str:
        return "canary" if service in self.canary else "stable"

    def encode(self) -> str:
        d: dict[str, Any] = {}
        for name, key in _WIRE.items():
            v = getattr(self, name)
            if name == "canary":
                if v:
                    d[key] = sorted(v)
            elif name == "failed":
                if v:
                    d[key] = 1
            elif v is not None:
                d[key] = round(v, _DIGITS.get(name, 1))
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> "Sample":
        d = json.loads(raw)
        kw: dict[str, Any] = {name: d.get(key) for name, key in _WIRE.items()}
        kw["canary"] = frozenset(kw["canary"] or ())
        kw["failed"] = bool(kw["failed"])
        return cls(**kw)


def split(samples: list[Sample], service: str) -> tuple[list[Sample], list[Sample]]:
    """(canary, stable) turns for one service's release."""
    canary = [s for s in samples if service in s.canary]
    stable = [s for s in samples if service not in s.canary]
    return canary, stable
