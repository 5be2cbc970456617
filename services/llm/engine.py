"""The LLM engine: validation, prompt building, an instance pool and a
token loop in a worker thread (its sampling steps: token_loop.py), with no gRPC in sight.

``generate()`` is an async generator of ``TokenDelta``s then one
``GenerateDone``. The token loop runs in a dedicated thread pool; it checks a
``threading.Event`` before emitting each sampled token, so closing or
cancelling the generator stops the model within one token. After the first
``urgent_tokens`` tokens (what the listener hears first) the loop goes on in
a thread with a lower CPU priority (``tail_nice``): the rest of the answer is
needed only as fast as it is spoken, and meanwhile the speech synthesis of
the first words must not share a core with it (with batched slots the
decode thread does all the compute, so the service turns this off: the tail
thread would only relay tokens). The instance goes
back to the pool when the worker has really stopped (a done-callback on the
worker's future), never while it may still be decoding."""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import AsyncGenerator, AsyncIterator, Callable, Optional, Sequence

from common.priority import lower_this_thread
from services.llm import budget, tools, validate
from services.llm.model import ChatTokenizer, ModelInstance
from services.llm.pool import InstancePool, reused_tokens
from services.llm.prompt import DEFAULT_SYSTEM_PROMPT, PASSAGE_WORDS, build_messages
from services.llm.schema import (
    Busy, Event, GenerateDone, GenerateRequest, InvalidRequest, Priority, TokenDelta,
)
from services.llm.token_loop import (
    Failed, LoopState, Prepared, decode_call, decode_steps, restored_note, took_cache,
)

log = logging.getLogger(__name__)


# A prefill may take a free instance only if that costs another conversation at
# most this many cached tokens (a system prompt's worth): background work never
# evicts a history that someone's next answer needs. Its own conversation's
# cache it may replace (pool.try_checkout).
PREFILL_MAX_EVICT = 48
# A prefill evaluates its prompt this many tokens at a time, and stops between
# two pieces when an answer someone waits for is evaluating its own prompt
# (~0.1-0.2 s a piece on this CPU): see LlmEngine.prefill.
PREFILL_PIECE = 48


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    limits: validate.Limits = validate.Limits()
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    passage_words: int = PASSAGE_WORDS  # passage text the model reads (prompt.py); 0 = whole passages
    max_waiting: int = 8          # requests queued for an instance before Busy
    wait_timeout_s: float = 30.0  # longest wait for an instance before Busy
    affinity_wait_s: float = 0.0  # an answer waits this long for the busy instance holding its cache
    affinity_min_tokens: int = 64  # ... if it holds at least this many more prompt tokens than the free one
    stop_wait_s: float = 5.0      # bounded wait for a cancelled worker to stop
    urgent_tokens: int = 4        # tokens decoded at normal priority, the rest at tail_nice
    tail_nice: int = 0            # nice steps below the service for the rest of an answer; 0 = no change
    call_bias: float = 0.0        # tool_choice auto: logit bonus for a call's first token (tools.py)


class LlmEngine:
    def __init__(self, tokenizer: ChatTokenizer, instances: Sequence[ModelInstance],
                 config: EngineConfig = EngineConfig(),
                 on_done: Optional[Callable[[GenerateDone], None]] = None,
                 on_queue_depth: Optional[Callable[[Priority, int], None]] = None) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.pool: InstancePool[ModelInstance] = InstancePool(
            list(instances), config.max_waiting, config.wait_timeout_s, on_queue_depth,
            affinity_wait_s=config.affinity_wait_s, affinity_min_tokens=config.affinity_min_tokens)
        self._on_done = on_done
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(instances), thread_name_prefix="llm-gen")
        # Linux priorities are per thread and cannot be raised again without
        # privileges: the tails get threads of their own, niced once at start.
        self._tail_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(instances), thread_name_prefix="llm-tail",
            initializer=lower_this_thread, initargs=(config.tail_nice,)) if config.tail_nice > 0 else None
        self._count_lock = threading.Lock()
        self.workers_running = 0   # token loops alive right now (tests and logs)
        # Urgent requests not yet at their first token (changed on the event
        # loop only; prefill workers read it: _yield_to_answers).
        self._evaluating = 0
        self._grammar = all(getattr(i, "supports_grammar", False) for i in instances)

    @property
    def n_ctx(self) -> int:
        return self.tokenizer.n_ctx

    def prepare(self, req: GenerateRequest) -> Prepared:
        """Validate and tokenize; raises InvalidRequest with a precise message."""
        limits = self.config.limits
        validate.check_messages(req, limits)
        max_tokens = validate.resolve_max_tokens(req, limits)
        sampling = validate.resolve_sampling(req, limits)
        plan = tools.plan(req)
        if plan is not None:
            if not self._grammar:
                raise InvalidRequest("tools: this LLM service runs the batched backend (LLM_BATCH_SLOTS), "
                                     "which cannot decode under a grammar; tool calls need the "
                                     "per-context backend (LLM_BATCH_SLOTS=0)")
            self.tokenizer.check_grammar(plan.grammar)
        msgs = build_messages(req.messages, req.passages, self.config.system_prompt,
                              self.config.passage_words, plan.tools if plan else (), req.passage_query)
        room = budget.answer_room(self.n_ctx)
        msgs, prompt, dropped = budget.fit(msgs, self.tokenizer.encode_chat, self.n_ctx - room)
        if dropped:
            log.info("request %s: the %d oldest messages dropped to leave %d tokens for the answer "
                     "in the %d-token context", req.request_id or "-", dropped, room, self.n_ctx)
        validate.check_context(len(prompt), self.n_ctx)
        # The answer may not run past the context window: clip, finish "length".
        max_tokens = min(max_tokens, self.n_ctx - len(prompt))
        return Prepared(prompt, sampling, max_tokens, req.request_id, plan,
                        min(tools.MAX_CALL_TOKENS, self.n_ctx - len(prompt)))

    def prepare_prefill(self, req: GenerateRequest) -> list[int]:
        validate.check_messages(req, self.config.limits)
        if req.messages[-1].role not in ("user", "assistant"):
            raise InvalidRequest(f"prefill needs a user message last (the turn being spoken) or an "
                                 f"assistant message (the answer just given), got {req.messages[-1].role!r}")
        plan = tools.plan(req)    # the tools' description: the same system prompt as the answer's
        msgs = build_messages(req.messages, req.passages, self.config.system_prompt,
                              self.config.passage_words, plan.tools if plan else (), req.passage_query)
        room = budget.answer_room(self.n_ctx)      # the same cut as the answer will make
        msgs, _, _ = budget.fit(msgs, self.tokenizer.encode_chat, self.n_ctx - room)
        prompt = self.tokenizer.encode_chat_open(msgs)
        if prompt is None:
            raise InvalidRequest("prefill: the last message's text was not found in the rendered prompt")
        validate.check_context(len(prompt), self.n_ctx)
        return prompt

    async def prefill(self, req: GenerateRequest) -> GenerateDone:
        """Warm a free instance's cache with the open prompt; never waits for one."""
        t0 = time.perf_counter()
        prompt = await asyncio.to_thread(self.prepare_prefill, req)
        inst = self.pool.try_checkout(prompt, max_evict=PREFILL_MAX_EVICT, conversation=req.conversation)
        if inst is None:
            return GenerateDone("busy", len(prompt), 0, 0.0, 0.0)
        self.pool.promise(inst, prompt)
        loop = asyncio.get_running_loop()
        gone = threading.Event()     # the client cancelled (a newer prefill replaced this one)
        try:
            fut = loop.run_in_executor(self._executor, _prefill, inst, prompt,
                                       lambda: gone.is_set() or self._yield_to_answers(inst))
        except BaseException:
            self.pool.release(inst)
            raise
        # Back to the pool when the evaluation has really ended, even if we are cancelled.
        fut.add_done_callback(lambda f: self.pool.release(inst))
        try:
            evaluated, restored, done, fast = await asyncio.shield(fut)   # a cancel must not cancel fut (it releases)
        except asyncio.CancelledError:
            gone.set()               # stop at the next piece
            raise
        ms = (time.perf_counter() - t0) * 1000.0
        cached = done - evaluated
        log.info("request %s: prefill of %d prompt tokens (%d evaluated, %d from cache) in %.0f ms%s%s",
                 req.request_id or "-", len(prompt), evaluated, cached, ms, restored_note(restored, fast),
                 "" if done == len(prompt) else f"; stopped after {done} for an answer")
        return GenerateDone("prefill", len(prompt), 0, 0.0, 0.0, cached_prompt_tokens=cached)

    def _yield_to_answers(self, inst: ModelInstance) -> bool:
        """Whether a prefill on ``inst`` should stop: an answer someone waits
        for is evaluating its prompt (on the other instance, both slowed on
        two cores; measured: a 420-token prefill whose passages the answer did
        not get took 2.3 s and the answer's first token 1.4 s), unless that
        answer waits for this very instance (its own prefill) and wants more
        than a piece of what the prefill has still to evaluate (pool.awaited).
        Read from the worker thread: plain reads."""
        return self._evaluating > 0 and not self.pool.awaited(inst, margin=PREFILL_PIECE)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Event]:
        if req.prefill:
            yield await self.prefill(req)
            return
        urgent = not req.background
        self._evaluating += urgent
        events = self._generate(req)
        try:
            async for ev in events:
                if urgent:
                    self._evaluating -= 1
                    urgent = False
                yield ev
        finally:
            self._evaluating -= urgent
            await events.aclose()    # at once: a cancelled answer stops its worker now (not at GC)

    async def _generate(self, req: GenerateRequest) -> AsyncGenerator[Event, None]:
        t0 = time.perf_counter()
        prep = await asyncio.to_thread(self.prepare, req)
        inst = await self._checkout(req, prep)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def emit(ev: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
            except RuntimeError:  # loop closed during shutdown: nobody is listening
                pass

        try:
            fut = loop.run_in_executor(self._executor, self._run, inst, prep, cancel, emit, t0)
        except BaseException:
            self.pool.release(inst)
            raise
        fut.add_done_callback(lambda f: self._worker_done(inst, f, prep))
        try:
            while True:
                ev = await queue.get()
                if isinstance(ev, Failed):
                    raise ev.exc
                yield ev
                if isinstance(ev, GenerateDone):
                    return
        finally:
            cancel.set()
            if not fut.done():
                # Bounded: a worker stuck in one huge prompt decode must not
                # hang the stream's cleanup; the instance still returns to the
                # pool when the worker ends (done-callback).
                done, _ = await asyncio.wait({fut}, timeout=self.config.stop_wait_s)
                if not done:
                    log.warning("request %s: worker still running %.1f s after cancel",
                                prep.request_id, self.config.stop_wait_s)

    async def _checkout(self, req: GenerateRequest, prep: Prepared) -> ModelInstance:
        if not req.background:
            return await self.pool.checkout(prep.prompt, req.priority, req.conversation)
        inst = self.pool.try_checkout(prep.prompt, conversation=req.conversation)
        if inst is None:
            raise Busy(f"background request: all {self.pool.size} model instances are busy or "
                       f"promised to waiting requests, and background work never queues")
        return inst

    def _worker_done(self, inst: ModelInstance, fut: asyncio.Future, prep: Prepared) -> None:
        self.pool.release(inst)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.error("request %s: generation failed: %r", prep.request_id, exc)
            return
        done: GenerateDone = fut.result()
        if self._on_done is not None:
            self._on_done(done)

    def _run(self, inst: ModelInstance, prep: Prepared, cancel: threading.Event,
             emit: Callable[[object], None], t0: float) -> GenerateDone:
        """The token loop (worker thread). Returns the final event, which it
        also emits, so the done-callback sees cancelled generations too."""
        with self._count_lock:
            self.workers_running += 1
        try:
            done = self._loop(inst, prep, cancel, emit, t0)
        except BaseException as exc:
            emit(Failed(exc))
            raise
        finally:
            with self._count_lock:
                self.workers_running -= 1
        emit(done)
        return done

    def _loop(self, inst: ModelInstance, prep: Prepared, cancel: threading.Event,
              emit: Callable[[object], None], t0: float) -> GenerateDone:
        st = LoopState(cached=reused_tokens(inst, prep.prompt))
        plan = prep.tools
        ban: tuple[int, ...] = ()
        if plan is not None and not cancel.is_set():
            call = plan.force
            if plan.decide and not call:
                logits = inst.first_logits(prep.prompt)
                took_cache(inst, st)
                call = tools.prefers_call(logits, self.tokenizer.call_openers(),
                                          self.config.call_bias)
            if call:
                return decode_call(inst, prep, cancel, emit, t0, st)
            # An answer in words never starts as half a call (after a tool's
            # result the model likes to write one out).
            ban = tuple(self.tokenizer.call_openers())
        it = inst.tokens(prep.prompt, prep.sampling, ban_first=ban) if ban else \
            inst.tokens(prep.prompt, prep.sampling)
        took_cache(inst, st)
        try:
            if cancel.is_set():
                st.finish = "cancelled"
            elif not decode_steps(inst, it, prep, cancel, emit, st, self.config.urgent_tokens) \
                    and self._tail_executor is not None:
                # The first words are out: the rest at the tail's lower priority.
                self._tail_executor.submit(decode_steps, inst, it, prep, cancel, emit, st, None).result()
            elif not st.ended:
                decode_steps(inst, it, prep, cancel, emit, st, None)
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()
        tail = st.decoder.decode(b"", final=True)
        if tail and st.finish != "cancelled":
            emit(TokenDelta(text=tail, index=max(st.n - 1, 0)))
        n = st.n
        ttft_ms = (st.t_first - t0) * 1000.0 if n else 0.0
        tps = (n - 1) / (st.t_last - st.t_first) if n > 1 and st.t_last > st.t_first else 0.0
        log.info("request %s: %s after %d tokens (prompt %d, %d from cache), ttft %.0f ms, %.1f tok/s%s",
                 prep.request_id or "-", st.finish, n, len(prep.prompt), st.cached, ttft_ms, tps,
                 restored_note(st.restored, st.fast))
        return GenerateDone(finish_reason=st.finish, prompt_tokens=len(prep.prompt),
                            completion_tokens=n, time_to_first_token_ms=ttft_ms,
                            tokens_per_second=tps, cached_prompt_tokens=st.cached)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._tail_executor is not None:
            self._tail_executor.shutdown(wait=True, cancel_futures=True)
        for inst in self.pool.idle():
            close = getattr(inst, "close", None)
            if callable(close):
                close()


def _prefill(inst: ModelInstance, prompt: Sequence[int], stop: Callable[[], bool]) -> tuple[int, int, int, int]:
    """Worker: tokens evaluated, tokens restored from the KV store (read
    while this request still holds the instance), how much of the prompt
    the cache holds then, and how many were evaluated on the faster weights
    (fast_prompt.py): an instance that can (``prefill_stops``) evaluates
    it a piece at a time and stops between pieces when ``stop()``."""
    if getattr(inst, "prefill_stops", False):
        evaluated = inst.prefill(prompt, stop=stop, piece=PREFILL_PIECE)   # type: ignore[call-arg]
    else:
        evaluated = inst.prefill(prompt)
    reused = getattr(inst, "reused", len(prompt) - evaluated)
    return evaluated, getattr(inst, "restored", 0), min(len(prompt), reused + evaluated), getattr(inst, "fast", 0)
