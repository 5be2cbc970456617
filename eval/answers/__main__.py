"""`python -m eval.answers` (`make eval-answers`): answers from docs/, right, grounded and quick?

Starts the RAG and LLM services and the gateway app (harness.py), asks every
question of questions.toml as a typed question in a fresh session, one at a
time, and prints per question and in total: retrieval recall@k, the key
facts stated, "I don't know" on questions outside the documents, claims the
passages do not contain, time to first token and to the whole answer. The
JSON (summary and every answer) goes to artifacts/eval-answers.json.

With --gateway and --rag it asks a running stack instead (`make run`)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from eval.answers import harness, report
from eval.answers.ask import Result, answer, ask
from eval.answers.questions import QUESTIONS, Question, load

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "artifacts" / "eval-answers.json"
WARM_UP = "Hello, are you there?"


async def run_all(questions: list[Question], ws_url: str, rag: str, echo: bool,
                  repeat: int = 1) -> list[Result]:
    # The first answer after a start pays the model's warm-up; it is not a figure.
    await answer(ws_url, WARM_UP)
    out = []
    for _ in range(repeat):     # the model samples: more rounds, steadier shares
        for q in questions:
            r = await ask(q, ws_url, rag)
            if echo:
                print(f"[{q.id}] {q.question}\n    -> {' '.join(r.answer.split())}", flush=True)
            out.append(r)
    return out


async def run_in_process(questions: list[Question], llm: str, rag: str, echo: bool,
                         repeat: int) -> tuple[list[Result], dict]:
    async with harness.in_process_gateway(llm, rag) as (url, settings):
        results = await run_all(questions, url, rag, echo, repeat)
    used = {k: getattr(settings, k) for k in ("instructions", "rag_k", "rag_min_score", "llm_max_tokens")}
    return results, used


def settings_env() -> dict[str, str]:
    """The service settings this run was given by environment (secrets left out)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(("LLM_", "GATEWAY_", "RAG_"))
            and not any(w in k for w in ("KEY", "PASSWORD", "SECRET", "TOKEN"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=Path, default=QUESTIONS, help=f"question set (default {QUESTIONS.name})")
    p.add_argument("--only", default="", help="comma-separated question ids (default: all)")
    p.add_argument("--gateway", default="", help="Realtime URL of a running gateway (default: start one here)")
    p.add_argument("--rag", default="", help="RAG address of that running stack (needed with --gateway)")
    p.add_argument("--llm-model", default="", help="GGUF for the LLM service started here (default: its own)")
    p.add_argument("--repeat", type=int, default=1, help="ask every question this many times (default 1)")
    p.add_argument("--label", default="", help="a name for this run, kept in the JSON (e.g. the change tried)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON summary (default {DEFAULT_OUT})")
    p.add_argument("-q", "--quiet", action="store_true", help="no answer-by-answer echo")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    questions = load(args.questions)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        questions = [q for q in questions if q.id in wanted]
        missing = wanted - {q.id for q in questions}
        if missing:
            p.error(f"no such question ids: {sorted(missing)}")
    if bool(args.gateway) != bool(args.rag):
        p.error("--gateway and --rag go together")
    t0 = time.monotonic()
    if args.gateway:
        results = asyncio.run(run_all(questions, args.gateway, args.rag, not args.quiet, args.repeat))
        used: dict = {}
    else:
        llm_env = {"LLM_MODEL": args.llm_model} if args.llm_model else {}
        with harness.services(llm_env) as (llm, rag):
            results, used = asyncio.run(run_in_process(questions, llm, rag, not args.quiet, args.repeat))
    s = report.summary(results)
    print(report.table(results))
    print()
    print(report.summary_text(s))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "label": args.label, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - t0, 1), "llm_model": args.llm_model or "default",
        "repeat": args.repeat, "environment": settings_env(),
        "gateway_settings": used, "summary": s,
        "results": [dataclasses.asdict(r) for r in results]}, indent=1))
    print(f"written: {args.out}")
    return 0 if s["failed"] == 0 else 1


if __name__ == "__main__":
    # A SIGTERM ends the run like Ctrl-C: the services it started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
