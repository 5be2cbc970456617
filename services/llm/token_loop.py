"""One answer's token loop, run in an LLM worker thread (engine.py owns the
threads, the pool and the priorities): sampling until the answer ends, a
cancel or the token budget (``decode_steps``, resumable so the urgent first
tokens and the tail can run on threads of different priority), and a tool
call decoded under its grammar and emitted whole (``decode_call``). The
``cancel`` event is checked before each sampled token is used, so a cancel
wastes at most the token being decoded."""
from __future__ import annotations

import codecs
import dataclasses
import logging
import threading
import time
from typing import Callable, Optional

from services.llm import tools
from services.llm.model import ModelInstance
from services.llm.schema import GenerateDone, ResolvedSampling, TokenDelta
from services.llm.tools import ToolPlan

log = logging.getLogger("services.llm.engine")   # the engine's log lines, as before the split


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated request, ready to run."""
    prompt: list[int]
    sampling: ResolvedSampling
    max_tokens: int
    request_id: str
    tools: Optional[ToolPlan] = None
    call_tokens: int = 0          # a tool call's token budget


class Failed:
    """Carries a worker exception to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@dataclasses.dataclass
class LoopState:
    """One answer's token loop, carried from its urgent part to its tail."""
    cached: int = 0
    restored: int = 0     # of those, got back from the KV store (kv_store.py)
    fast: int = 0         # prompt tokens evaluated on the faster weights (fast_prompt.py)
    seen: bool = False    # cached/restored read from the instance after its first call
    n: int = 0
    finish: str = "stop"
    t_first: float = 0.0
    t_last: float = 0.0
    ended: bool = False
    decoder: codecs.IncrementalDecoder = dataclasses.field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


def decode_call(inst: ModelInstance, prep: Prepared, cancel: threading.Event,
                emit: Callable[[object], None], t0: float, st: LoopState) -> GenerateDone:
    """Decode a tool call under the grammar (greedy, no repeat penalty: a
    call is data, not prose, and JSON repeats its quotes) and emit it
    whole, then the final event; a call cut short by its token budget is
    dropped (finish "length")."""
    assert prep.tools is not None, "decode_call needs the request's tool plan"
    greedy = dataclasses.replace(prep.sampling, temperature=0.0, repeat_penalty=1.0)
    it = inst.tokens(prep.prompt, greedy, grammar=prep.tools.grammar)
    took_cache(inst, st)
    text, finish = bytearray(), "stop"
    try:
        for token in it:
            if cancel.is_set():
                finish = "cancelled"
                break
            if inst.is_stop(token):
                break
            st.n += 1
            st.t_last = time.perf_counter()
            if st.n == 1:
                st.t_first = st.t_last
            text += inst.piece(token)
            if st.n >= prep.call_tokens:
                finish = "length"
                break
    finally:
        close = getattr(it, "close", None)
        if callable(close):
            close()
    if finish == "stop":
        try:
            emit(tools.parse_call(text.decode("utf-8", "replace")))
            finish = "tool_call"
        except ValueError:
            log.warning("request %s: the tool call did not parse: %r", prep.request_id or "-", bytes(text[:200]))
            finish = "length"
    ttft_ms = (st.t_first - t0) * 1000.0 if st.n else 0.0
    log.info("request %s: %s after %d tokens (prompt %d, %d from cache), ttft %.0f ms%s",
             prep.request_id or "-", finish, st.n, len(prep.prompt), st.cached, ttft_ms,
             restored_note(st.restored, st.fast))
    return GenerateDone(finish_reason=finish, prompt_tokens=len(prep.prompt), completion_tokens=st.n,
                        time_to_first_token_ms=ttft_ms, tokens_per_second=0.0,
                        cached_prompt_tokens=st.cached)


def decode_steps(inst: ModelInstance, it, prep: Prepared, cancel: threading.Event,
                 emit: Callable[[object], None], st: LoopState, upto: int | None) -> bool:
    """Sample until the answer ends (True) or ``upto`` tokens were sent (False)."""
    for token in it:
        # Checked before using each sampled token: after a cancel
        # at most the token being decoded is wasted, none is sent.
        if cancel.is_set():
            st.finish = "cancelled"
            break
        if inst.is_stop(token):
            st.finish = "stop"
            break
        st.n += 1
        st.t_last = time.perf_counter()
        if st.n == 1:
            st.t_first = st.t_last
        text = st.decoder.decode(inst.piece(token))
        if text:
            emit(TokenDelta(text=text, index=st.n - 1))
        if st.n >= prep.max_tokens:
            st.finish = "length"
            break
        if upto is not None and st.n >= upto:
            return False
    st.ended = True
    return True


def took_cache(inst: ModelInstance, st: LoopState) -> None:
    """What the instance's first call for this request reused and restored
    (KV store included); a second call (a tool request's tokens after its
    first logits) finds the whole prompt cached and must not overwrite it."""
    if not st.seen:
        st.seen = True
        st.cached = getattr(inst, "reused", st.cached)
        st.restored = getattr(inst, "restored", 0)
        st.fast = getattr(inst, "fast", 0)


def restored_note(n: int, fast: int = 0) -> str:
    """The log's note of a cache the request got back from the KV store
    (kv_store.py) and of prompt tokens evaluated on the faster weights (fast_prompt.py)."""
    return (f" ({n} tokens restored from the KV store)" if n else "") + \
        (f" ({fast} prompt tokens evaluated on q8_0)" if fast else "")
