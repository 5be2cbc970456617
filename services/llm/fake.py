"""Scripted stand-ins for the model, behind the same interfaces as the real
llama.cpp classes (model.ChatTokenizer / model.ModelInstance). Tests (and
anyone wiring the engine without a GGUF) drive the engine with these: the
token stream is known in advance and can be paced one token at a time."""
from __future__ import annotations

import os
import threading
from typing import Iterator, Optional, Sequence, Union

from services.llm.pool import common_prefix
from services.llm.schema import ResolvedSampling

STOP = 0


class ScriptedTokenizer:
    """Tokenizes the rendered chat as whitespace-separated words, each word
    mapped to a stable id, so equal conversation prefixes give equal token prefixes."""

    def __init__(self, n_ctx: int = 2048) -> None:
        self.n_ctx = n_ctx
        self.last_messages: list[dict[str, str]] = []
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        self.last_messages = messages
        words = " ".join(f"<{m['role']}> {m['content']} </s>" for m in messages).split()
        with self._lock:
            return [self._ids.setdefault(w, len(self._ids) + 1000) for w in words] + [1]

    def encode_chat_open(self, messages: list[dict[str, str]]) -> list[int] | None:
        full = self.encode_chat(messages)
        return full[:-2]   # without the last message's "</s>" and the generation prompt


class ScriptedInstance:
    """Yields the scripted pieces as tokens, then a stop token.

    With ``gate`` set, each token waits for one ``gate.release()``: a test can
    then hold the model mid-answer and count exactly how many tokens it sampled."""

    def __init__(self, script: Sequence[Union[str, bytes]], gate: Optional[threading.Semaphore] = None,
                 stop_at_end: bool = True) -> None:
        self.script = [p.encode() if isinstance(p, str) else p for p in script]
        self.gate = gate
        self.stop_at_end = stop_at_end
        self.produced = 0          # tokens sampled by the current/last generation
        self.generations = 0
        self.closed = 0            # generations whose iterator was closed
        self.last_prompt: list[int] = []
        self.last_sampling: Optional[ResolvedSampling] = None
        self._cache: list[int] = []
        self.prefills: list[list[int]] = []
        self.token_threads: list[tuple[str, int]] = []   # (thread name, nice) per sampled token

    def cached_tokens(self) -> Sequence[int]:
        return self._cache

    def prefill(self, prompt: Sequence[int]) -> int:
        keep = common_prefix(self._cache, prompt)
        self.prefills.append(list(prompt))
        self._cache = list(prompt)
        return len(prompt) - keep

    def tokens(self, prompt: Sequence[int], sampling: ResolvedSampling) -> Iterator[int]:
        self.generations += 1
        self.produced = 0
        self.last_prompt = list(prompt)
        self.last_sampling = sampling
        self._cache = list(prompt)
        return self._gen()

    def _gen(self) -> Iterator[int]:
        try:
            for i in range(len(self.script)):
                if self.gate is not None:
                    self.gate.acquire()
                self.produced += 1
                self.token_threads.append((threading.current_thread().name,
                                           os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
                self._cache.append(100 + i)
                yield 100 + i
            if self.stop_at_end:
                yield STOP
        finally:
            self.closed += 1

    def is_stop(self, token: int) -> bool:
        return token == STOP

    def piece(self, token: int) -> bytes:
        return self.script[token - 100]
