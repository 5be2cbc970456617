"""ASR evaluation by slice, and two releases compared (`make eval`).

    python -m eval.asr                                  # base against tiny.en, bundled speech
    python -m eval.asr --a base --b base:beam=5 --snr 20 10 5
    python -m eval.asr --folder ~/my-recordings --a base   # WAV + .txt pairs
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from common.cores import host_cores
from eval.asr import speech as speech_set
from eval.asr.report import write
from eval.asr.run import Release, engine_transcriber, run
from eval.asr.slices import compare

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", default="base", help="release A (the one in use): model[:beam=N,trim=0,pad=S]")
    p.add_argument("--b", default="tiny.en", help="release B (the candidate); '' = evaluate A alone")
    p.add_argument("--snr", type=float, nargs="*", default=[20.0, 10.0, 5.0],
                   help="pink noise added at these SNRs (dB), besides the clean audio")
    p.add_argument("--folder", type=Path, help="a folder of WAV (16 kHz mono) + .txt references "
                                               "instead of the bundled speech")
    p.add_argument("--no-phrases", action="store_true", help="bundled speech: whole clips only")
    p.add_argument("--limit", type=int, default=0, help="at most this many utterances (0 = all)")
    p.add_argument("--margin", type=float, default=0.02, help="WER difference (absolute) a regression exceeds")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "eval" / "asr.md")
    args = p.parse_args(argv)

    if args.folder:
        utts = speech_set.folder(args.folder)
        note = f"Speech: {len(utts)} utterances from {args.folder}."
    else:
        utts = speech_set.bundled(phrases=not args.no_phrases)
        note = (f"Speech: {len(utts)} utterances of real speech bundled with the project (5 read clips "
                f"and the 2-4 word phrases cut from them, tests/data/speech).")
    if args.limit:
        utts = utts[:args.limit]
    snrs = [None, *args.snr]
    note += (" Noise: generated pink noise at " + ", ".join(f"{s:g}" for s in args.snr) + " dB SNR "
             "(no package here ships recorded noise)." if args.snr else "")
    releases = [Release.parse(args.a)] + ([Release.parse(args.b)] if args.b else [])
    runs = []
    for rel in releases:
        transcribe, close = engine_transcriber(rel, threads=max(1, host_cores()))
        try:
            runs.append(run(rel, utts, snrs, transcribe, progress=lambda m: print(m, file=sys.stderr)))
        finally:
            close()
    comparison = compare(runs[0].results, runs[1].results, args.margin) if len(runs) == 2 else None
    command = "python -m eval.asr " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = write(runs, comparison, args.out, command.strip(), note)
    print(out.read_text())
    print(f"\nreport: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
