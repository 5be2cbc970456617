"""Invariant: the LLM engine streams the model's tokens in order and ends
with one done event whose counts match; a cancelled or closed stream stops
the model within one token, frees its instance for the next request and is
still accounted (on_done sees "cancelled"); requests beyond the pool wait in
a bounded queue and then get Busy. Driven with the scripted fake model."""
from __future__ import annotations

import asyncio
import threading

import pytest

from services.llm.engine import EngineConfig, LlmEngine
from services.llm.fake import ScriptedInstance, ScriptedTokenizer
from services.llm.schema import Busy, ChatMessage, GenerateDone, GenerateRequest, TokenDelta
from services.llm.reuse import common_prefix

REQ = GenerateRequest(messages=(ChatMessage("user", "tell me something"),))
SCRIPT = ["Hello", ",", " I", " am", " a", " tiny", " model", "."]


def make(instances, **cfg):
    done: list[GenerateDone] = []
    eng = LlmEngine(ScriptedTokenizer(), instances, EngineConfig(**cfg), on_done=done.append)
    return eng, done


async def collect(eng, req=REQ):
    deltas, final = [], None
    async for ev in eng.generate(req):
        if isinstance(ev, TokenDelta):
            deltas.append(ev)
        else:
            final = ev
    return deltas, final


async def wait_for(pred, timeout=5.0):
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def test_tokens_stream_in_order_then_done_with_counts():
    eng, done = make([ScriptedInstance(SCRIPT)])
    deltas, final = await collect(eng)
    assert "".join(d.text for d in deltas) == "".join(SCRIPT)
    assert [d.index for d in deltas] == list(range(len(SCRIPT)))
    assert final.finish_reason == "stop"
    assert final.completion_tokens == len(SCRIPT)
    assert final.prompt_tokens == len(eng.prepare(REQ).prompt)
    assert final.time_to_first_token_ms > 0
    await wait_for(lambda: done)
    assert done == [final]
    eng.close()


async def test_max_tokens_ends_with_length():
    eng, _ = make([ScriptedInstance(SCRIPT)])
    deltas, final = await collect(eng, GenerateRequest(messages=REQ.messages, max_tokens=3))
    assert len(deltas) == 3 and final.finish_reason == "length" and final.completion_tokens == 3
    eng.close()


async def test_utf8_split_across_tokens_is_reassembled():
    snow = "☃".encode()  # three bytes, sent as three tokens
    eng, _ = make([ScriptedInstance([b"a ", snow[:1], snow[1:2], snow[2:], b" b"])])
    deltas, final = await collect(eng)
    assert "".join(d.text for d in deltas) == "a ☃ b"
    assert all("\ufffd" not in d.text for d in deltas)
    assert final.completion_tokens == 5
    eng.close()


async def test_cancel_stops_the_model_within_one_token_and_frees_the_instance():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["w"] * 100, gate=gate)
    eng, done = make([inst])
    got: list[TokenDelta] = []

    async def consume():
        async for ev in eng.generate(REQ):
            got.append(ev)

    task = asyncio.create_task(consume())
    for _ in range(3):
        gate.release()
    await wait_for(lambda: len(got) == 3)
    assert inst.produced == 3
    task.cancel()
    await asyncio.sleep(0.01)  # let the cancel land (ordering, not a timing assert)
    # The model is mid-decode of token 4 when the cancel lands; let it finish
    # that token and offer it plenty more: it must take at most one.
    for _ in range(50):
        gate.release()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inst.produced <= 4
    assert inst.closed == 1 and eng.workers_running == 0
    assert eng.pool.busy == 0
    await wait_for(lambda: done)
    assert done[0].finish_reason == "cancelled" and done[0].completion_tokens <= 4
    # The freed instance serves the next request normally.
    inst.gate = None
    deltas, final = await collect(eng)
    assert final.finish_reason == "stop" and len(deltas) == 100
    eng.close()


async def test_closing_the_stream_early_also_stops_the_worker():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["w"] * 100, gate=gate)
    eng, done = make([inst])
    gen = eng.generate(REQ)
    gate.release()
    first = await gen.__anext__()
    assert isinstance(first, TokenDelta)
    closing = asyncio.create_task(gen.aclose())
    await asyncio.sleep(0.01)  # let aclose() set the cancel flag first
    for _ in range(20):
        gate.release()
    await closing
    assert inst.produced <= 2 and eng.workers_running == 0 and eng.pool.busy == 0
    await wait_for(lambda: done)
    assert done[0].finish_reason == "cancelled"
    eng.close()


async def test_requests_beyond_the_pool_wait_then_queue_full_is_busy():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["x", "y"], gate=gate)
    eng, _ = make([inst], max_waiting=1, wait_timeout_s=10)
    first = asyncio.create_task(collect(eng))
    await wait_for(lambda: eng.pool.busy == 1)
    second = asyncio.create_task(collect(eng))     # waits in the queue
    await wait_for(lambda: eng.pool.waiting == 1)
    with pytest.raises(Busy) as err:
        await collect(eng)                         # queue full
    assert "queue limit 1" in str(err.value)
    for _ in range(4):
        gate.release()
    (d1, f1), (d2, f2) = await asyncio.gather(first, second)
    assert f1.finish_reason == f2.finish_reason == "stop"
    assert eng.pool.busy == 0 and eng.pool.waiting == 0
    eng.close()


async def test_waiting_past_the_timeout_is_busy_and_leaves_the_pool_whole():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["x"], gate=gate)
    eng, _ = make([inst], max_waiting=4, wait_timeout_s=0.05)
    first = asyncio.create_task(collect(eng))
    await wait_for(lambda: eng.pool.busy == 1)
    with pytest.raises(Busy) as err:
        await collect(eng)
    assert "0.05 s" in str(err.value)
    gate.release()
    await first
    assert eng.pool.busy == 0 and eng.pool.waiting == 0
    eng.close()


async def test_two_instances_generate_concurrently():
    gate = threading.Semaphore(0)
    a, b = ScriptedInstance(["a"] * 5, gate=gate), ScriptedInstance(["b"] * 5, gate=gate)
    eng, _ = make([a, b])
    tasks = [asyncio.create_task(collect(eng)) for _ in range(2)]
    await wait_for(lambda: eng.pool.busy == 2)   # both checked out before any token
    for _ in range(10):
        gate.release()
    results = await asyncio.gather(*tasks)
    assert sorted("".join(d.text for d in r[0]) for r in results) == ["aaaaa", "bbbbb"]
    eng.close()


async def test_a_conversation_returns_to_the_instance_holding_its_prefix():
    a, b = ScriptedInstance(["ok"]), ScriptedInstance(["ok"])
    eng, _ = make([a, b])
    turn1 = GenerateRequest(messages=(ChatMessage("user", "my name is Ada"),))
    other = GenerateRequest(messages=(ChatMessage("user", "unrelated question here"),))
    await collect(eng, turn1)
    first = a if a.generations else b
    await collect(eng, other)  # goes to whichever instance; we only care about turn 2
    turn2 = GenerateRequest(messages=turn1.messages + (
        ChatMessage("assistant", "ok"), ChatMessage("user", "what is my name?")))
    before = first.generations
    await collect(eng, turn2)
    assert first.generations == before + 1
    eng.close()


async def test_sampling_overrides_reach_the_model():
    from services.llm.schema import Sampling
    inst = ScriptedInstance(["x"])
    eng, _ = make([inst])
    await collect(eng, GenerateRequest(messages=REQ.messages,
                                       sampling=Sampling(temperature=0.0, top_k=5, seed=9)))
    s = inst.last_sampling
    assert (s.temperature, s.top_k, s.seed) == (0.0, 5, 9)
    eng.close()


async def test_many_streams_with_random_cancels_never_leak_an_instance():
    import random

    rng = random.Random(5)
    instances = [ScriptedInstance(["t"] * 30) for _ in range(2)]
    eng, done = make(instances, max_waiting=64, wait_timeout_s=30)
    outcomes = {"done": 0, "cancelled": 0}

    async def client(i: int) -> None:
        task = asyncio.create_task(collect(eng))
        if rng.random() < 0.5:
            await asyncio.sleep(rng.random() * 0.003)
            task.cancel()
        try:
            await task
            outcomes["done"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1

    await asyncio.gather(*(client(i) for i in range(40)))
    assert outcomes["done"] + outcomes["cancelled"] == 40
    assert outcomes["done"] > 0 and outcomes["cancelled"] > 0
    await wait_for(lambda: eng.workers_running == 0)
    assert eng.pool.busy == 0 and eng.pool.waiting == 0
    assert len(eng.pool.idle()) == 2
    assert eng._evaluating == 0      # no answer left counted as waiting for its first token
    # Every generation that started was accounted exactly once.
    assert len(done) == sum(i.generations for i in instances)
    deltas, final = await collect(eng)
    assert final.finish_reason == "stop" and len(deltas) == 30
    eng.close()


# -- prefill: warm an instance with a turn that is still being spoken ------------------------

def spoken(text: str) -> GenerateRequest:
    return GenerateRequest(messages=(ChatMessage("system", "be brief"), ChatMessage("user", text)),
                           prefill=True)


async def test_prefill_warms_an_instance_that_the_full_request_then_reuses():
    a, b = ScriptedInstance(["ok"]), ScriptedInstance(["ok"])
    eng, done = make([a, b])
    _, first = await collect(eng, spoken("what is the"))
    assert first.finish_reason == "prefill" and first.completion_tokens == 0
    warmed = a if a.prefills else b
    assert len(warmed.prefills) == 1 and not warmed.generations
    # The prompt grows as the user goes on: the same instance, only the new words evaluated.
    _, second = await collect(eng, spoken("what is the weather like"))
    assert len(warmed.prefills) == 2 and second.cached_prompt_tokens == len(warmed.prefills[0])
    # The complete turn goes to that instance and finds the spoken part in its cache.
    full = GenerateRequest(messages=spoken("what is the weather like today").messages)
    _, final = await collect(eng, full)
    assert warmed.generations == 1 and final.finish_reason == "stop"
    assert final.cached_prompt_tokens == len(warmed.prefills[1])
    await wait_for(lambda: len(done) == 1)   # on_done runs when the worker has ended
    assert done == [final]   # prefills are not generations: on_done sees only the answer
    eng.close()


async def test_a_warm_up_after_a_document_answer_replaces_its_own_passages_not_anothers_history():
    """The warm-up after an answer (the history the next turn starts with, the
    passages no longer quoted) goes to the instance holding this
    conversation, whose passages it cuts; another conversation's history is
    never evicted for it, and a request without a key cannot claim either."""
    from services.llm.schema import Passage
    alices, bobs = ScriptedInstance(["ok"]), ScriptedInstance(["ok"])
    eng, _ = make([alices, bobs], passage_words=0)
    doc = Passage("guide.md", "Guide", " ".join(f"fact{i}" for i in range(120)))
    question = ChatMessage("user", "how do I start it")
    await collect(eng, GenerateRequest(messages=(question,), passages=(doc,), conversation="alice"))
    assert alices.generations == 1 and len(alices.cached_tokens()) > 120   # a tie: the first instance
    bobs._cache = list(range(5000, 5200))          # someone else's history, 200 tokens
    warm = (question, ChatMessage("assistant", "ok"))
    _, unknown = await collect(eng, GenerateRequest(messages=warm, prefill=True))
    assert unknown.finish_reason == "busy"          # no key: both caches are someone's
    _, other = await collect(eng, GenerateRequest(messages=warm, prefill=True, conversation="carol"))
    assert other.finish_reason == "busy"
    _, own = await collect(eng, GenerateRequest(messages=warm, prefill=True, conversation="alice"))
    assert own.finish_reason == "prefill" and len(alices.prefills) == 1 and not bobs.prefills
    eng.close()


async def test_prefill_never_waits_for_a_busy_instance():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["w"] * 3, gate=gate)
    eng, _ = make([inst])
    answer = asyncio.create_task(collect(eng))
    await wait_for(lambda: inst.generations == 1)
    _, pre = await asyncio.wait_for(collect(eng, spoken("hello there")), 1.0)
    assert pre.finish_reason == "busy" and not inst.prefills
    for _ in range(4):
        gate.release()
    await answer
    eng.close()


async def test_prefill_needs_a_user_or_assistant_message_last():
    eng, _ = make([ScriptedInstance(["ok"])])
    bad = GenerateRequest(messages=(ChatMessage("user", "hi"), ChatMessage("tool", "22 C")),
                          prefill=True)
    with pytest.raises(Exception, match="prefill needs a user message last"):
        await collect(eng, bad)
    eng.close()


async def test_the_answer_tail_runs_at_the_lower_priority_and_streams_on():
    inst = ScriptedInstance(SCRIPT)
    eng, _ = make([inst], urgent_tokens=3, tail_nice=7)
    deltas, final = await collect(eng)
    assert "".join(d.text for d in deltas) == "".join(SCRIPT) and final.finish_reason == "stop"
    names = [name.split("_")[0] for name, _ in inst.token_threads]
    nices = [nice for _, nice in inst.token_threads]
    assert names[:3] == ["llm-gen"] * 3 and set(names[3:]) == {"llm-tail"}
    assert nices[:3] == [nices[0]] * 3 and set(nices[3:]) == {min(19, nices[0] + 7)}
    eng.close()


async def test_cancel_during_the_tail_still_stops_within_one_token():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["w"] * 100, gate=gate)
    eng, done = make([inst], urgent_tokens=2, tail_nice=5)
    got: list[TokenDelta] = []

    async def consume():
        async for ev in eng.generate(REQ):
            got.append(ev)

    task = asyncio.create_task(consume())
    for _ in range(5):
        gate.release()
    await wait_for(lambda: len(got) == 5)     # tokens 3-5 came from the tail thread
    task.cancel()
    await asyncio.sleep(0.01)
    for _ in range(50):
        gate.release()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inst.produced <= 6 and inst.token_threads[-1][0].startswith("llm-tail")
    assert eng.workers_running == 0 and eng.pool.busy == 0
    await wait_for(lambda: done)
    assert done[0].finish_reason == "cancelled"
    eng.close()


def test_a_prefill_yields_to_an_answer_being_evaluated_unless_that_answer_waits_for_it():
    import collections

    a, b = ScriptedInstance(["x"]), ScriptedInstance(["y"])
    eng = LlmEngine(ScriptedTokenizer(2048), [a, b], EngineConfig())
    assert not eng._yield_to_answers(a)          # nobody waits for an answer
    eng._evaluating = 1
    assert eng._yield_to_answers(a)              # an answer evaluates elsewhere: stop
    fut = asyncio.new_event_loop().create_future()
    eng.pool._wanted[id(a)] = collections.deque([(fut, None)])   # its prompt not known: wanted
    assert not eng._yield_to_answers(a)          # ... but it waits for this instance's cache
    fut.cancel()
    assert eng._yield_to_answers(a)


class PiecewiseInstance(ScriptedInstance):
    """Evaluates a prefill a piece at a time, each piece taking a while."""
    prefill_stops = True

    def __init__(self) -> None:
        super().__init__(["x"])
        self.pieces = 0

    def prefill(self, prompt, stop=None, piece=0):
        import time as _time

        done = 0
        while done < len(prompt):
            if done and stop is not None and stop():
                break
            _time.sleep(0.02)
            done = min(len(prompt), done + piece)
            self.pieces += 1
        self.reused = 0
        return done


async def test_a_cancelled_prefill_stops_at_its_next_piece_and_frees_the_instance():
    """A client that cancels a prefill (the gateway replaced it by one for
    newer words) stops its evaluation at the next piece, not at the end."""
    inst = PiecewiseInstance()
    eng, _ = make([inst])
    long_turn = GenerateRequest(messages=(ChatMessage("user", " ".join(["word"] * 2000)),), prefill=True)
    task = asyncio.create_task(collect(eng, long_turn))
    await wait_for(lambda: inst.pieces >= 1)
    task.cancel()
    await wait_for(lambda: eng.pool.busy == 0)
    n_tokens = len(eng.prepare_prefill(long_turn))
    from services.llm.engine import PREFILL_PIECE
    assert inst.pieces < n_tokens / PREFILL_PIECE / 2, (inst.pieces, n_tokens)
    eng.close()


async def test_a_prefill_stops_for_another_conversations_answer_but_not_for_its_own():
    """Through the engine, not by hand: an answer of another conversation,
    evaluating on the other instance, stops a running prefill at its next
    piece; the prefill's own answer, waiting for that instance, does not."""
    from services.llm.engine import PREFILL_PIECE

    long_turn = (ChatMessage("user", " ".join(["word"] * 2000)),)
    # Another conversation's answer, held before its first token.
    a, gate = PiecewiseInstance(), threading.Semaphore(0)
    eng, _ = make([a, ScriptedInstance(["x"], gate=gate)])
    pieces = -(-len(eng.prepare_prefill(GenerateRequest(messages=long_turn, prefill=True))) // PREFILL_PIECE)
    prefill = asyncio.create_task(collect(eng, GenerateRequest(messages=long_turn, prefill=True)))
    await wait_for(lambda: a.pieces >= 1)
    other = asyncio.create_task(collect(eng))
    await asyncio.wait_for(prefill, 5)
    assert a.pieces < pieces / 2, (a.pieces, pieces)
    gate.release(10)
    await asyncio.wait_for(other, 5)
    eng.close()
    # Its own answer waits for the instance: the prefill runs to its end.
    a = PiecewiseInstance()
    eng, _ = make([a, ScriptedInstance(["x"])], affinity_wait_s=0.5)
    prefill = asyncio.create_task(collect(eng, GenerateRequest(messages=long_turn, prefill=True)))
    await wait_for(lambda: a.pieces >= 1)
    deltas, final = await asyncio.wait_for(collect(eng, GenerateRequest(messages=long_turn)), 10)
    await prefill
    assert a.pieces == pieces and a.generations == 1 and final.finish_reason == "stop"
    eng.close()


class ProgressInstance(PiecewiseInstance):
    """A piecewise prefill whose cache grows piece by piece, from what it
    shared with the prompt (as LlamaInstance's n_tokens does)."""

    def prefill(self, prompt, stop=None, piece=0):
        import time as _time

        keep = common_prefix(self._cache, prompt)
        self._cache = list(prompt[:keep])
        done = 0
        while len(self._cache) < len(prompt):
            if done and stop is not None and stop():
                break
            _time.sleep(0.02)
            self._cache = list(prompt[:len(self._cache) + piece])
            done += piece
            self.pieces += 1
        self.reused = keep
        return min(done, len(prompt) - keep)


async def test_a_prefill_stops_for_its_own_answer_when_the_answer_shares_only_what_was_cached():
    """The prefill of a turn whose words retrieved passages, and the answer to
    the final words, which retrieved none: they share the conversation so far,
    already cached, and nothing the prefill is evaluating. The answer waits for
    this instance (its history is there), and the prefill stops at its next
    piece instead of running to its end (seen at 4 users: 239 passage tokens in
    1.4 s, the answer's first token 994 ms)."""
    from services.llm.engine import PREFILL_PIECE

    history = (ChatMessage("user", " ".join(["earlier"] * 300)), ChatMessage("assistant", "fine"))
    passages = (ChatMessage("user", "notes: " + " ".join(["passage"] * 1200) + " what now"),)
    a = ProgressInstance()
    eng, _ = make([a, ScriptedInstance(["x"])], affinity_wait_s=0.5)
    with_passages = GenerateRequest(messages=history + passages, prefill=True)
    a._cache = list(eng.prepare_prefill(GenerateRequest(messages=history, prefill=True)))
    pieces = -(-len(eng.prepare_prefill(with_passages)) // PREFILL_PIECE)
    prefill = asyncio.create_task(collect(eng, with_passages))
    await wait_for(lambda: a.pieces >= 1)
    deltas, final = await asyncio.wait_for(
        collect(eng, GenerateRequest(messages=history + (ChatMessage("user", "what now"),))), 10)
    await prefill
    assert a.generations == 1 and final.finish_reason == "stop"   # the answer ran on its history's instance
    assert a.pieces < pieces / 2, (a.pieces, pieces)               # and the prefill stopped early for it
    eng.close()
