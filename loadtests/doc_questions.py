"""Questions about the shipped documents in the load test's mix (issues #11,
#12): the answer eval's answerable questions (eval/answers/questions.toml),
spoken by the stack's own TTS (its default voice; a clip is spoken again only
when its text changed) into a folder of clips that the Locust users
load like the recorded ones (clients/clips.py: NAME.wav + NAME.txt).

A document question is the turn that costs the most: retrieval, then an LLM
prompt of ~250 tokens of quoted passages against ~40 for small talk
(docs/benchmarks.md, "Questions about the documents"). A capacity figure
measured on the recorded clips alone, none of which retrieves a passage
(tests/integration/test_load_clips_not_documents.py), says nothing about a
host whose people also ask about the documents; ``--doc-share`` in
loadtests/capacity.py puts them in the mix.

    python -m loadtests.doc_questions --tts 127.0.0.1:50055 --out artifacts/doc-questions"""
from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

from clients.synth import speak
from common.audio import write_wav
from eval.answers.questions import Question, load

RATE = 16000          # the load test's microphone rate (locustfile.RATE)


def answerable(questions: list[Question] | None = None) -> list[Question]:
    """The eval's questions that the documents answer (the others are declined
    without passages and would not cost what a document question costs)."""
    return [q for q in (load() if questions is None else questions) if q.answerable]


def clip_name(index: int, q: Question) -> str:
    return f"doc-{index:02d}-" + re.sub(r"[^a-z0-9]+", "-", q.id.lower()).strip("-")


async def prepare(tts_address: str, folder: Path, questions: list[Question] | None = None) -> list[Path]:
    """Speak every answerable question into ``folder`` (16 kHz WAV with its
    text beside it); a clip already there with the same text is kept, so
    steps and runs speak the same audio, and any other clip there goes (the
    Locust users load every clip in the folder: a question since removed or
    moved must not stay in the mix). Returns the WAV paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for i, q in enumerate(answerable(questions)):
        wav = folder / f"{clip_name(i, q)}.wav"
        txt = wav.with_suffix(".txt")
        if not (wav.exists() and txt.exists() and txt.read_text().strip() == q.question):
            write_wav(wav, await speak(tts_address, q.question, RATE), RATE)
            txt.write_text(q.question + "\n")
        out.append(wav)
    for stale in set(folder.glob("*.wav")) - set(out):
        stale.unlink()
        stale.with_suffix(".txt").unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Speak the answer eval's questions into load-test clips.")
    p.add_argument("--tts", default="127.0.0.1:50055", help="TTS gRPC address (default 127.0.0.1:50055)")
    p.add_argument("--out", type=Path, default=Path("artifacts/doc-questions"), help="clip folder")
    a = p.parse_args(argv)
    paths = asyncio.run(prepare(a.tts, a.out))
    print(f"{len(paths)} document questions in {a.out}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
