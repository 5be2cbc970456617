"""Long runs of prompt tokens evaluated on Q8_0 weights, answers decoded on
the shipped Q4_1 ones (``LLM_FAST_PROMPT=q8_0``, the default; issue #12).

Why: a document question's wait is its prompt, ~200-300 tokens of passages,
and llama.cpp's fast CPU matrix kernels have no Q4_1 (requantize.py). The
same model converted to Q8_0 evaluates prompts ~1.4x faster but decodes
~20 % slower, so serving it whole (``LLM_REQUANTIZE``) moves every
answer's first clause later. Here each weight type does what it is fast
at: the run of prompt tokens an answer (or a prefill) has to evaluate goes
to a context on the Q8_0 weights, and the decoding stays where it was.

How: llama.cpp writes a sequence's KV cache out and reads it into another
context of the same architecture (``llama_state_seq_get_data`` /
``set_data``, as kv_store.py does). The instance's cached prefix is copied
into the evaluator's context, the new tokens are decoded there, and the
whole sequence is copied back. Measured on the 2-core host (`python -m
bench llm_quant`, docs/benchmarks.md): 256 new tokens after 300 cached
took 1159 ms on Q4_1 alone and 864 ms this way, 16 tokens 84 and 105 ms
(the copies), with next-token logits correlating 0.999 with Q4_1's. The
instance then evaluates the prompt's last token itself, so its logits
(and the answer's first token) come from its own weights.

One evaluator (one context, ~150 MB with the weights) serves every
instance. A prefill (background) never waits for it: one that finds it
busy evaluates on its own weights as before. An answer waits at most
``ANSWER_WAIT_S``: the holder is usually a prefill, which stops at its next
piece for an answer (engine.py), and a 250-token run costs ~0.35 s more
on the shipped weights than here. Prompt evaluation already takes both
cores, so a second evaluator would only split them."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from services.llm.cpu_share import PromptThreads
from services.llm.kv_store import read_sequence, write_sequence

log = logging.getLogger(__name__)

# Below this many tokens to evaluate the copies cost about what they save
# (bench llm_quant: 32 new tokens after 300 cached, 148 ms alone, 151 here).
MIN_TOKENS = 32
# The copies scale with the whole sequence, the saving with the evaluated
# run (~1.2 ms a token at 256): a run shorter than this share of the
# sequence is not worth them.
MIN_SHARE = 0.05
# The longest an answer waits for a busy evaluator: a prefill's piece (48
# tokens, engine.PREFILL_PIECE) takes ~0.2 s here.
ANSWER_WAIT_S = 0.25
# With the thread count adapting (cpu_share.py), an answer's run is also
# evaluated in pieces of at most this many tokens, each choosing its threads.
ADAPT_PIECE = 64


def copy_sequence(src: Any, dst: Any) -> bool:
    """Replace sequence 0 of context ``dst`` with that of ``src`` (same
    architecture and KV cache layout, as the KV store copies); False if it
    did not load (``dst`` then empty, unless reading ``src`` failed)."""
    seq = read_sequence(src)
    return seq is not None and write_sequence(dst, *seq)


class PromptEvaluator:
    """A llama.cpp context on the faster weights, lent to one instance at a time."""

    def __init__(self, model_path: str, n_ctx: int, n_batch: int, n_threads: int,
                 min_tokens: int = MIN_TOKENS,
                 on_eval: Optional[Callable[[str, int], None]] = None,
                 threads: Optional[PromptThreads] = None,
                 on_threads: Optional[Callable[[int, int], None]] = None) -> None:
        from llama_cpp._utils import suppress_stdout_stderr

        n_batch = min(n_batch, n_ctx)      # as llama.cpp caps a context's batch
        with suppress_stdout_stderr(disable=False):    # llama.cpp's lines about every buffer it reserves
            self._load(model_path, n_ctx, n_batch, n_threads)
        self.n_batch = n_batch
        self.min_tokens = min_tokens
        # (outcome, tokens) per use, for metrics: "evaluated" or "busy" (the
        # instance evaluated on its own weights) or "failed".
        self._on_eval = on_eval or (lambda outcome, n: None)
        self._lock = threading.Lock()
        # Threads per piece from what the rest of the machine leaves free
        # (cpu_share.py; None: always n_threads); on_threads: (threads, tokens) per piece.
        self._threads = threads if threads is not None and threads.enabled else None
        self._on_threads = on_threads or (lambda n, tokens: None)
        self._n_threads = n_threads

    def _load(self, model_path: str, n_ctx: int, n_batch: int, n_threads: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        mparams = llama_cpp.llama_model_default_params()
        self._model = _internals.LlamaModel(path_model=model_path, params=mparams, verbose=False)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = n_batch
        cparams.n_threads = cparams.n_threads_batch = n_threads
        # The instances' layout (llama-cpp-python's Llama turns flash attention
        # off): a sequence's state copies only between alike KV caches.
        cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = _internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        self._batch: Any = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def wants(self, cached: int, todo: int) -> bool:
        """Whether a run of ``todo`` tokens after ``cached`` ones pays for the copies."""
        return todo >= self.min_tokens and todo >= MIN_SHARE * (cached + todo)

    def evaluate(self, ctx: Any, start: int, tokens: Sequence[int],
                 stop: Optional[Callable[[], bool]] = None, piece: int = 0, wait_s: float = 0.0,
                 busy_tokens: Optional[int] = None) -> Optional[int]:
        """Evaluate ``tokens`` at positions ``start``... of sequence 0 of the
        instance's context ``ctx`` (whose cache holds exactly ``start``
        tokens) here, and put the result back into ``ctx``. Returns how many
        were evaluated (fewer when ``stop()`` said so between pieces of
        ``piece`` tokens); None when the evaluator is busy, the copy over
        or a decode failed (``ctx`` holds its ``start`` tokens as before);
        -1 when the copy back failed (``ctx`` is empty). ``wait_s``: the
        longest to wait for a busy evaluator; ``busy_tokens``: how many of
        ``tokens`` the caller then evaluates itself (the metric's count;
        default all of them: a prefill asks again after each piece)."""
        got = self._lock.acquire(timeout=wait_s) if wait_s > 0 else self._lock.acquire(blocking=False)
        if not got:
            self._on_eval("busy", len(tokens) if busy_tokens is None else min(busy_tokens, len(tokens)))
            return None
        try:
            return self._evaluate(ctx, start, tokens, stop, piece)
        finally:
            self._lock.release()

    def _evaluate(self, ctx: Any, start: int, tokens: Sequence[int],
                  stop: Optional[Callable[[], bool]], piece: int) -> Optional[int]:
        import llama_cpp

        own = self._ctx.ctx
        if start and not copy_sequence(ctx, own):
            log.warning("fast prompt: the instance's cache (%d tokens) did not copy over; "
                        "evaluating on its own weights", start)
            self._on_eval("failed", len(tokens))
            return None
        if not start:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(own), True)
        step = min(self.n_batch, piece) if stop is not None and piece > 0 else self.n_batch
        if self._threads is not None:
            step = min(step, ADAPT_PIECE)
        done, t0 = 0, time.perf_counter()
        pieces: list[tuple[int, float]] = []     # (threads, cores free) per piece, for the debug log
        while done < len(tokens):
            if done and stop is not None and stop():
                break
            chunk = tokens[done:done + step]
            self._fill(chunk, start + done)
            rc = self._decode(own, len(chunk), pieces)
            if rc != 0:     # the instance's context is as it was: it evaluates on its own weights
                log.warning("fast prompt: llama_decode returned %d; evaluating on the instance's weights", rc)
                self._on_eval("failed", len(tokens))
                return None
            done += len(chunk)
        if not copy_sequence(own, ctx):
            log.warning("fast prompt: the evaluated cache did not copy back; the instance starts over")
            self._on_eval("failed", len(tokens))
            return -1
        self._on_eval("evaluated", done)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fast prompt: %d tokens after %d in %.0f ms, threads per piece %s", done, start,
                      (time.perf_counter() - t0) * 1000,
                      [f"{n}({free:.2f} free)" for n, free in pieces] or "fixed")
        return done

    def _decode(self, own: Any, n_tokens: int, pieces: list[tuple[int, float]]) -> int:
        import llama_cpp

        th = self._threads
        if th is None:
            return int(llama_cpp.llama_decode(own, self._batch))
        n = th.choose()
        if n != self._n_threads:
            llama_cpp.llama_set_n_threads(own, n, n)
            self._n_threads = n
        piece = th.begin(n)
        rc = int(llama_cpp.llama_decode(own, self._batch))
        if rc == 0:         # a failed decode says nothing about speed, and evaluated nothing
            th.end(piece, n_tokens)
            self._on_threads(n, n_tokens)
            pieces.append((n, th.last_free))
        return rc

    def _fill(self, chunk: Sequence[int], pos0: int) -> None:
        b = self._batch
        b.n_tokens = len(chunk)
        for i, tok in enumerate(chunk):
            b.token[i] = tok
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 0      # no output: the instance evaluates the prompt's last token itself

    def close(self) -> None:
        """Free the context and weights (once; waits for a running evaluation)."""
        import llama_cpp

        with self._lock:
            if self._batch is None:
                return
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
            self._ctx.close()
            self._model.close()
