"""Short phrases cut from the project's real speech clips: two to four words
of a human reader, with their reference text. Voice commands are short ("seven
of clubs"), and short inputs are where Whisper went wrong in the service
(issue #13: phrases read twice), while the whole clips are 3-7 s sentences.

The cuts are a table (tests/data/speech/phrases.tsv: clip, start ms, end ms,
text), made once by scripts/cut_phrases.py and reviewed, so every run hears
exactly the same audio."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from clients.clips import SPEECH
from common.audio import pcm16_to_float, read_wav

TABLE = SPEECH / "phrases.tsv"


@dataclasses.dataclass(frozen=True)
class Phrase:
    clip: str        # the clip's stem
    start_ms: int
    end_ms: int
    text: str        # reference, normalised (clients/wer.py)

    @property
    def name(self) -> str:
        return f"{self.clip}@{self.start_ms}-{self.end_ms}"


def read_table(path: Path = TABLE) -> list[Phrase]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            clip, start, end, text = line.split("\t")
            out.append(Phrase(clip, int(start), int(end), text))
    return out


def load_phrases(path: Path = TABLE, words: tuple[int, ...] = (2, 3, 4)) -> list[tuple[Phrase, np.ndarray]]:
    """(phrase, float32 16 kHz samples) for each phrase of ``words`` words."""
    audio: dict[str, np.ndarray] = {}
    out = []
    for p in read_table(path):
        if len(p.text.split()) not in words:
            continue
        if p.clip not in audio:
            pcm, rate = read_wav(path.parent / f"{p.clip}.wav")
            if rate != 16000:
                raise ValueError(f"{p.clip}: {rate} Hz, expected 16000")
            audio[p.clip] = pcm16_to_float(pcm)
        out.append((p, audio[p.clip][p.start_ms * 16:p.end_ms * 16]))
    return out
