"""Make tests/data/speech/phrases.tsv: every run of 2-4 consecutive words of
each project clip, cut out with its reference text (clients/phrases.py).

Where the words are: Whisper base's word timings from faster-whisper's own
``transcribe`` (30 s window, beam 5), matched to the reference words (a
word Whisper missed or misheard takes its neighbours' phrases out). A cut
goes at the quietest 10 ms within ±80 ms of the word boundary, not at the
boundary itself, so it falls between words rather than inside one; a
phrase that starts or ends the clip keeps the clip's own edge. Reviewed by
ear is better than trusted: Whisper's boundaries are ±100 ms.

    PYTHONPATH=.:gen .venv/bin/python scripts/cut_phrases.py > tests/data/speech/phrases.tsv
"""
from __future__ import annotations

import difflib
import sys

import numpy as np

from clients.clips import clips
from clients.wer import normalise
from common.audio import pcm16_to_float, read_wav
from services.asr import models

RATE = 16000
SEARCH_S = 0.08


def quietest_near(audio: np.ndarray, t: float) -> int:
    """Sample index of the quietest 10 ms frame within SEARCH_S of ``t`` seconds."""
    rms = np.sqrt(np.convolve(audio ** 2, np.ones(RATE // 100) / (RATE // 100), mode="same"))
    c = int(t * RATE)
    lo, hi = max(0, c - int(SEARCH_S * RATE)), min(audio.size, c + int(SEARCH_S * RATE))
    return c if hi <= lo else lo + int(np.argmin(rms[lo:hi]))


def main() -> None:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(models.resolve("base")), device="cpu", compute_type="int8", cpu_threads=1)
    print("# clip\tstart_ms\tend_ms\ttext  (made by scripts/cut_phrases.py)")
    for wav, ref in clips():
        audio = pcm16_to_float(read_wav(wav)[0])
        segments, _ = model.transcribe(audio, language="en", beam_size=5, word_timestamps=True,
                                       condition_on_previous_text=False)
        heard = [(normalise(w.word), w.start, w.end) for s in segments for w in s.words]
        ref_words = normalise(ref).split()
        match: dict[int, int] = {}
        blocks = difflib.SequenceMatcher(a=ref_words, b=[h[0] for h in heard]).get_matching_blocks()
        for i, j, n in blocks:
            match.update({i + k: j + k for k in range(n)})
        for n in (2, 3, 4):
            for i in range(len(ref_words) - n + 1):
                js = [match.get(k) for k in range(i, i + n)]
                if None in js or js != list(range(js[0], js[0] + n)):
                    continue
                start = 0 if js[0] == 0 else quietest_near(audio, heard[js[0]][1])
                end = audio.size if js[-1] == len(heard) - 1 else quietest_near(audio, heard[js[-1]][2])
                print(f"{wav.stem}\t{start * 1000 // RATE}\t{end * 1000 // RATE}\t"
                      f"{' '.join(ref_words[i:i + n])}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
