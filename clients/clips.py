"""The project's real speech clips (tests/data/speech), found and loaded for
any client of the protocol: the load test, benchmarks and the test suite all
speak the same recordings, and a load test needs nothing from tests/.

Each clip comes with its voiced span (clients/speech.py) because the figures
are measured from the audio itself, not from the server's VAD."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from clients.speech import VoicedSpan, voiced_span
from common.audio import read_wav

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech"


def clips(folder: Path = SPEECH) -> list[tuple[Path, str]]:
    """(wav path, reference text) for every clip in ``folder``."""
    return [(w, w.with_suffix(".txt").read_text().strip()) for w in sorted(folder.glob("*.wav"))]


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str
    pcm: bytes          # 16-bit little-endian mono
    rate: int
    span: VoicedSpan    # first/last voiced sample, from the clip's energy
    text: str

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate


def load_clips(folder: Path = SPEECH, rate: int | None = None) -> list[Clip]:
    """Every clip decoded; ``rate`` (if given) must be each clip's own rate,
    so no caller resamples by accident."""
    out = []
    for path, text in clips(folder):
        pcm, r = read_wav(path)
        if rate is not None and r != rate:
            raise ValueError(f"{path} is {r} Hz, expected {rate}")
        out.append(Clip(path.stem, pcm, r, voiced_span(pcm, r), text))
    if not out:
        raise FileNotFoundError(f"no .wav clips in {folder}")
    return out
