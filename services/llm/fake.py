"""Scripted stand-ins for the model, behind the same interfaces as the real
llama.cpp classes (model.ChatTokenizer / model.ModelInstance). Tests (and
anyone wiring the engine without a GGUF) drive the engine with these: the
token stream is known in advance and can be paced one token at a time."""
from __future__ import annotations

import os
import threading
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from services.llm.pool import common_prefix
from services.llm.schema import ResolvedSampling

STOP = 0
OPENER = 1   # the scripted "{": the token that opens a tool call


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

    def call_openers(self) -> Sequence[int]:
        return [OPENER]

    def check_grammar(self, gbnf: str) -> None:
        """Every grammar passes: the fake does not decode under it."""


class ScriptedInstance:
    """Yields the scripted pieces as tokens, then a stop token.

    With ``gate`` set, each token waits for one ``gate.release()``: a test can
    then hold the model mid-answer and count exactly how many tokens it sampled.

    Tools: ``call`` is what it "decodes" under a grammar (the grammar is only
    recorded), and ``wants_call`` whether its first-token logits prefer a
    call (an opener) to a word."""

    supports_grammar = True

    def __init__(self, script: Sequence[Union[str, bytes]], gate: Optional[threading.Semaphore] = None,
                 stop_at_end: bool = True, call: Sequence[Union[str, bytes]] = (),
                 wants_call: bool = False) -> None:
        self.script = [p.encode() if isinstance(p, str) else p for p in script]
        self.call = [p.encode() if isinstance(p, str) else p for p in call]
        self.wants_call = wants_call
        self._pieces = self.script
        self.grammars: list[Optional[str]] = []     # per generation
        self.banned_first: list[tuple[int, ...]] = []
        self.decisions = 0                           # first_logits calls
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

    def tokens(self, prompt: Sequence[int], sampling: ResolvedSampling, grammar: Optional[str] = None,
               ban_first: Sequence[int] = ()) -> Iterator[int]:
        self.generations += 1
        self.produced = 0
        self.last_prompt = list(prompt)
        self.last_sampling = sampling
        self.grammars.append(grammar)
        self.banned_first.append(tuple(ban_first))
        self._cache = list(prompt)
        self._pieces = self.call if grammar else self.script
        return self._gen()

    def first_logits(self, prompt: Sequence[int]) -> np.ndarray:
        self.decisions += 1
        self._cache = list(prompt)
        logits = np.zeros(4, dtype=np.float32)
        logits[STOP] = -np.inf
        logits[OPENER] = 2.0 if self.wants_call else -2.0
        return logits

    def _gen(self) -> Iterator[int]:
        try:
            for i in range(len(self._pieces)):
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
        return self._pieces[token - 100]
