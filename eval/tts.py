"""TTS evaluation (`make eval`, issue #14): intelligibility by ASR round trip
and first-audio latency, per voice.

Every sentence is synthesised by the voice (in process, as the TTS service's
engine calls it: one piece per sentence) and transcribed back by Whisper
base at beam 5 on the full window (the most accurate ASR here, so what it
misses the voice said badly, within Whisper's own error); WER against the
sentence, with clients/wer.py's normalisation. First audio is the time to
the voice's first piece of audio (what a listener waits for after the text
is known), real-time factor = synthesis time over audio time.

    python -m eval.tts [--voices-dir DIR] [--out var/eval/tts.md]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

from clients.wer import wer
from common.audio import pcm16_to_float, resample_pcm16
from common.cores import host_cores

ROOT = Path(__file__).resolve().parent.parent
# Everyday sentences with what a voice gets wrong: numbers, names, times, places.
SENTENCES = (
    "The meeting starts at half past nine on Tuesday morning.",
    "Please turn the living room lights off and lock the front door.",
    "Your package from Berlin should arrive within three business days.",
    "It will be sunny and warm this afternoon, with a light breeze.",
    "Set a timer for twenty five minutes.",
    "Call Margaret back before six o'clock tonight.",
    "The train to Edinburgh leaves from platform four.",
    "Remind me to buy milk, eggs and two loaves of bread.",
    "The temperature outside is minus three degrees.",
    "Your next appointment is on the fourteenth of March.",
    "Play some quiet piano music in the kitchen.",
    "The battery is at sixty percent and charging.",
)


def evaluate(voice, transcribe, sentences=SENTENCES) -> dict:
    firsts, rtfs, hyps = [], [], []
    for text in sentences:
        t0 = time.perf_counter()
        pieces, first = [], None
        for pcm in voice.synthesize(text, voice.default_length_scale):
            if first is None:
                first = time.perf_counter() - t0
            pieces.append(pcm)
        total = time.perf_counter() - t0
        audio = b"".join(pieces)
        seconds = len(audio) / 2 / voice.info.sample_rate
        firsts.append(first or total)
        rtfs.append(total / seconds if seconds else float("nan"))
        hyps.append(transcribe(pcm16_to_float(resample_pcm16(audio, voice.info.sample_rate, 16000))))
    xs = sorted(firsts)
    return {"voice": voice.info.id, "sentences": len(sentences), "wer": wer(list(sentences), hyps),
            "first_audio_p50_ms": 1000 * statistics.median(xs),
            "first_audio_max_ms": 1000 * xs[-1], "rtf": statistics.median(rtfs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voices-dir", default="", help="more piper voices (.onnx + .onnx.json) besides the default")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "eval" / "tts.md")
    args = p.parse_args(argv)

    from services.asr import models
    from services.asr.engine import EngineOptions, WhisperEngine
    from services.tts.voices import load_voices

    cores = max(1, host_cores())
    asr = WhisperEngine(str(models.resolve("base")), EngineOptions(threads=cores, num_workers=1, interim_nice=0,
                                                                  final_trim=False))
    never = threading.Event()

    def transcribe(audio) -> str:
        return asr.transcribe_final(audio, "en", 5, never, words=False).text

    rows = []
    try:
        for voice in load_voices(args.voices_dir, threads=1).values():
            rows.append(evaluate(voice, transcribe))
            print(f"{voice.info.id}: done", file=sys.stderr)
    finally:
        asr.close()
    lines = ["# TTS evaluation", "",
             "Written by `python -m eval.tts` (eval/tts.py): each voice speaks "
             f"{len(SENTENCES)} everyday sentences (numbers, names, times), transcribed back by Whisper "
             "base (beam 5, full window). First audio: the voice's first piece after the text, in process, "
             "one onnxruntime thread (the service's default on 2 cores).", "",
             "| voice | sentences | round-trip WER | first audio p50 / max | real-time factor |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['voice']} | {r['sentences']} | {100 * r['wer']:.1f} % | "
                     f"{r['first_audio_p50_ms']:.0f} / {r['first_audio_max_ms']:.0f} ms | {r['rtf']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
