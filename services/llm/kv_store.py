"""Conversations' KV caches kept in RAM when their model instance is taken
by another conversation, and put back when they return (issue #11).

With more conversations than instances, an answer sometimes lands on an
instance that holds another conversation: it evaluated its whole history
again (measured at 4 users: 234-455 prompt tokens, first token 1.1-4.4 s
instead of ~0.1 s), and evicted that other conversation, whose next answer
then paid the same. A sequence's KV cache is small for the default model
(~23 KB per token: 9.2 MB for 400 tokens) and copies out in ~5 ms and back
in ~2 ms (llama.cpp's llama_state_seq_get_data / set_data), so an instance
saves what it is about to evict here, and any instance restores it when
that conversation's prompt comes back: the same bytes, the same logits.

The store is keyed by the saved tokens and bounded in bytes (the oldest
saved out first; a cache put back for its own conversation leaves the
store, one only another prompt's start shares stays: take()): bookkeeping under a lock, which instances' worker threads
share. The copies (save, restore: llama.cpp calls on one instance's context,
made by the thread that holds the instance) happen outside the lock."""
from __future__ import annotations

import collections
import ctypes
import dataclasses
import logging
import threading
from typing import Any, Callable, Optional, Sequence

from services.llm.reuse import common_prefix

log = logging.getLogger(__name__)

# Only a cache losing at least this many tokens is worth a copy (a system
# prompt is ~30 tokens and in every instance).
MIN_TOKENS = 64
# A restore (~2 ms) must spare at least this many tokens of evaluation over
# what the instance reuses anyway (~3-10 ms a token on a busy 2-core host).
MIN_GAIN = 16


@dataclasses.dataclass(frozen=True)
class Saved:
    tokens: tuple[int, ...]
    data: Any          # the sequence's state, as llama_state_seq_get_data wrote it
    nbytes: int


class KvStore:
    def __init__(self, max_bytes: int, min_tokens: int = MIN_TOKENS, min_gain: int = MIN_GAIN,
                 on_change: Optional[Callable[[str, int], None]] = None) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self.min_gain = min_gain
        # (event, bytes held after it) for metrics: event is save, restore or drop.
        self._on_change = on_change or (lambda event, nbytes: None)
        self._entries: collections.OrderedDict[tuple[int, ...], Saved] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.saves = self.restores = self.dropped = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def worth_saving(self, tokens: Sequence[int], kept: int) -> bool:
        """Whether a cache of ``tokens``, of which the next use keeps ``kept``,
        loses enough to copy it out first: a long stretch, and most of it (a
        next use that keeps most of the cache is the same conversation going
        on, e.g. after its answer was cut: the lost tail is never asked for)."""
        lost = len(tokens) - kept
        return self.max_bytes > 0 and lost >= self.min_tokens and kept < len(tokens) // 2

    def put(self, tokens: Sequence[int], data: Any, nbytes: int) -> None:
        """Keep a saved cache. An entry whose tokens start the new one is the
        same conversation, earlier: it goes (the new one serves every prompt
        it served). Then the oldest go until the bytes fit."""
        key = tuple(tokens)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            for k in [k for k in self._entries if len(k) <= len(key) and key[:len(k)] == k]:
                self.bytes -= self._entries.pop(k).nbytes
            self._entries[key] = Saved(key, data, nbytes)
            self.bytes += nbytes
            self.saves += 1
            dropped = 0
            while self.bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self.bytes -= old.nbytes
                dropped += 1
            self.dropped += dropped
            held = self.bytes
        self._on_change("save", held)
        for _ in range(dropped):
            self._on_change("drop", held)

    def take(self, prompt: Sequence[int], better_than: int,
             reuses: Optional[Callable[[tuple[int, ...]], int]] = None) -> Optional[Saved]:
        """The saved cache that serves ``prompt`` best, if it beats
        ``better_than`` (what the instance reuses anyway) by at least
        min_gain. When the prompt goes on with most of it (its conversation
        is back) it leaves the store: the instance that restores it holds it
        now, and saves it again when it evicts it. When the prompt only shares
        its start (another conversation's question under the same grounding
        instructions) it stays: taking it out lost that conversation's cache
        to a 60-token gain (measured: a repeated document question, 266
        tokens, then evaluated again in 600 ms). ``reuses(key)``: prompt
        tokens a cache of ``key`` spares (default: the shared prefix; the
        instance passes its own rule, context shift included)."""
        score = reuses or (lambda key: common_prefix(key, prompt))
        with self._lock:
            found, reach = None, better_than + self.min_gain - 1
            for key, saved in self._entries.items():
                if len(key) <= reach:
                    continue
                n = score(key)
                if n > reach:
                    found, reach = saved, n
            if found is None:
                return None
            if reach >= len(found.tokens) // 2:
                self.bytes -= self._entries.pop(found.tokens).nbytes
        return found

    def discard(self, saved: Saved) -> None:
        """Drop a saved cache that did not load (it would fail every prompt it serves)."""
        with self._lock:
            if self._entries.get(saved.tokens) is saved:
                self.bytes -= self._entries.pop(saved.tokens).nbytes

    def restored(self) -> None:
        """A cache taken was put back into an instance (counted for metrics)."""
        with self._lock:
            self.restores += 1
            held = self.bytes
        self._on_change("restore", held)


def read_sequence(ctx: Any) -> Optional[tuple[Any, int]]:
    """Sequence 0 of a llama.cpp context as (bytes, size), None if it did not copy out."""
    import llama_cpp

    n = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buf = (ctypes.c_uint8 * n)()
    return (buf, n) if llama_cpp.llama_state_seq_get_data(ctx, buf, n, 0) == n else None


def write_sequence(ctx: Any, data: Any, nbytes: int) -> bool:
    """Replace the context's cache with a sequence read_sequence wrote; False (cache empty) if it did not load."""
    import llama_cpp

    mem = llama_cpp.llama_get_memory(ctx)
    llama_cpp.llama_memory_clear(mem, True)
    if llama_cpp.llama_state_seq_set_data(ctx, data, nbytes, 0) == nbytes:
        return True
    llama_cpp.llama_memory_clear(mem, True)
    return False


def save(ctx: Any, cached: Sequence[int], store: KvStore) -> None:
    """Copy sequence 0 of a llama.cpp context (holding ``cached``) into the store."""
    import llama_cpp

    # Only the tokens the cache is known to hold (a cut answer may have left more).
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, len(cached), -1)
    seq = read_sequence(ctx)
    if seq is not None:
        store.put(cached, *seq)


def restore(ctx: Any, saved: Saved) -> bool:
    """Replace the context's cache with a saved one; False (cache empty) if it did not load."""
    if write_sequence(ctx, saved.data, saved.nbytes):
        return True
    log.warning("KV store: a saved cache of %d tokens did not load; evaluating it", len(saved.tokens))
    return False
