"""Invariant: the real LLM service (SmolLM2 GGUF via llama-cpp-python)
streams token deltas then one done message with its counts; a stream the
client cancels stops server-side (GetStatus: cancelled +1, active back to 0;
the out-token counter stops far short of max_tokens) and the service then
serves the next request; requests beyond instances + queue get
RESOURCE_EXHAUSTED; a background request finding no free instance gets
RESOURCE_EXHAUSTED at once while an urgent one waits for the next free
instance; each malformed request gets INVALID_ARGUMENT saying what was wrong. Checks streaming, cancellation and non-empty answers, not wisdom."""
from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import grpc
import pytest

from common.stubs import common_pb2, llm_pb2, llm_pb2_grpc
from services.llm.model import default_model_path
from tests.procs import ROOT, running

pytestmark = pytest.mark.slow

LONG = "Write a very long story about a dragon who travels around the world, with many chapters."


@pytest.fixture(scope="module")
def llm():
    with running("services.llm", "LLM_", {"LLM_INSTANCES": "2", "LLM_QUEUE": "4"}) as svc:
        yield svc


def user(text: str) -> llm_pb2.ChatMessage:
    return llm_pb2.ChatMessage(role="user", content=text)


async def status(addr: str) -> common_pb2.ServiceStatus:
    async with grpc.aio.insecure_channel(addr) as ch:
        return await llm_pb2_grpc.ChatStub(ch).GetStatus(common_pb2.StatusRequest())


def out_tokens(metrics_port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    m = re.search(r'^voice_llm_tokens_total\{[^}]*direction="out"[^}]*\} (\S+)$', body, re.M)
    return float(m.group(1)) if m else 0.0


async def generate(addr: str, req: llm_pb2.GenerateRequest):
    async with grpc.aio.insecure_channel(addr) as ch:
        deltas, done = [], None
        async for r in llm_pb2_grpc.ChatStub(ch).Generate(req, timeout=120):
            if r.HasField("delta"):
                assert done is None, "delta after done"
                deltas.append(r.delta)
            else:
                done = r.done
        return deltas, done


async def test_tokens_stream_then_done_with_counts(llm):
    req = llm_pb2.GenerateRequest(messages=[user("What is the capital of France? Answer briefly.")],
                                  max_tokens=40, request_id="it-stream")
    deltas, done = await generate(llm.address, req)
    text = "".join(d.text for d in deltas)
    assert text.strip(), "empty answer"
    assert len(deltas) >= 2, "answer came in one piece, not streamed"
    assert [d.index for d in deltas] == sorted(d.index for d in deltas)
    assert done is not None and done.finish_reason in ("stop", "length")
    assert done.prompt_tokens > 10
    assert len(deltas) <= done.completion_tokens <= 40
    assert 0 < done.time_to_first_token_ms < 30_000
    assert done.tokens_per_second > 0


async def test_the_same_question_twice_gets_the_same_greedy_answer(llm):
    """The second ask finds its whole prompt cached on the instance, followed by
    the first answer. llama-cpp-python samples at once from the context's
    current logits on such an exact hit, and those were the first answer's
    end: the second answer came out empty (two users asking the same thing
    under load). It must start from the prompt's own last token."""
    def req(rid: str) -> llm_pb2.GenerateRequest:
        return llm_pb2.GenerateRequest(messages=[user("Name a large city in Europe.")], max_tokens=12,
                                       sampling=llm_pb2.SamplingParams(temperature=0.0), request_id=rid)
    first, _ = await generate(llm.address, req("it-twice-1"))
    second, done = await generate(llm.address, req("it-twice-2"))
    a, b = "".join(d.text for d in first), "".join(d.text for d in second)
    assert a.strip(), "empty first answer"
    assert b == a and done.completion_tokens > 0, (a, b)


async def test_max_tokens_limits_the_answer(llm):
    req = llm_pb2.GenerateRequest(messages=[user(LONG)], max_tokens=5)
    deltas, done = await generate(llm.address, req)
    assert done.finish_reason == "length" and done.completion_tokens == 5


async def test_passages_ground_the_answer_and_still_stream(llm):
    passage = common_pb2.Passage(
        source="user-guide.md", title="Interrupting the assistant",
        text="To interrupt the assistant, just start speaking while it talks. It stops at once.")
    req = llm_pb2.GenerateRequest(messages=[user("How do I interrupt the assistant?")],
                                  passages=[passage], max_tokens=60,
                                  sampling=llm_pb2.SamplingParams(temperature=0.0))
    deltas, done = await generate(llm.address, req)
    plain = llm_pb2.GenerateRequest(messages=[user("How do I interrupt the assistant?")],
                                    max_tokens=60, sampling=llm_pb2.SamplingParams(temperature=0.0))
    _, done_plain = await generate(llm.address, plain)
    assert "".join(d.text for d in deltas).strip()
    # The passage really went into the prompt.
    assert done.prompt_tokens > done_plain.prompt_tokens + 15


async def test_cancelled_stream_stops_server_side_and_service_recovers(llm):
    before = await status(llm.address)
    out_before = out_tokens(llm.metrics_port)
    async with grpc.aio.insecure_channel(llm.address) as ch:
        call = llm_pb2_grpc.ChatStub(ch).Generate(llm_pb2.GenerateRequest(
            messages=[user(LONG)], max_tokens=1000,
            sampling=llm_pb2.SamplingParams(temperature=0.8, seed=7)))
        seen = 0
        async for r in call:
            assert r.HasField("delta"), "finished before we could cancel"
            seen += 1
            if seen == 3:
                call.cancel()
                break
    after = before
    for _ in range(100):
        after = await status(llm.address)
        if after.cancelled_streams == before.cancelled_streams + 1 and after.active_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert after.cancelled_streams == before.cancelled_streams + 1
    assert after.active_streams == 0
    assert after.failed_streams == before.failed_streams
    # The worker really stopped: its tokens were counted, and far fewer than max_tokens.
    spent = 0.0
    for _ in range(50):
        spent = out_tokens(llm.metrics_port) - out_before
        if spent >= 3:
            break
        await asyncio.sleep(0.05)
    assert 3 <= spent < 100
    # And the service serves the next request.
    _, done = await generate(llm.address, llm_pb2.GenerateRequest(messages=[user("Say hello.")],
                                                                 max_tokens=10))
    assert done.finish_reason in ("stop", "length") and done.completion_tokens > 0
    assert (await status(llm.address)).completed_streams > after.completed_streams


async def test_concurrent_streams_beyond_the_pool_all_complete(llm):
    reqs = [llm_pb2.GenerateRequest(messages=[user(f"Count from one to {n}.")], max_tokens=20)
            for n in (3, 4, 5)]
    results = await asyncio.gather(*(generate(llm.address, r) for r in reqs))
    for deltas, done in results:
        assert done.completion_tokens > 0 and "".join(d.text for d in deltas).strip()


@pytest.mark.parametrize("req, needle", [
    (llm_pb2.GenerateRequest(), "messages is empty"),
    (llm_pb2.GenerateRequest(messages=[llm_pb2.ChatMessage(role="robot", content="hi")]),
     "messages[0].role 'robot'"),
    (llm_pb2.GenerateRequest(messages=[llm_pb2.ChatMessage(role="user", content="")]),
     "messages[0] is a user message with empty content"),
    (llm_pb2.GenerateRequest(messages=[user("hi")], max_tokens=100000), "max_tokens 100000"),
    (llm_pb2.GenerateRequest(messages=[user("hi")], max_tokens=-5), "max_tokens -5"),
    (llm_pb2.GenerateRequest(messages=[user("hi")],
                             sampling=llm_pb2.SamplingParams(temperature=9)), "sampling.temperature"),
    (llm_pb2.GenerateRequest(messages=[user("hi")],
                             sampling=llm_pb2.SamplingParams(top_p=0)), "sampling.top_p"),
    (llm_pb2.GenerateRequest(messages=[user("hi")],
                             sampling=llm_pb2.SamplingParams(top_k=-1)), "sampling.top_k"),
    (llm_pb2.GenerateRequest(messages=[user("hi")],
                             sampling=llm_pb2.SamplingParams(repeat_penalty=-1)), "sampling.repeat_penalty"),
    (llm_pb2.GenerateRequest(messages=[user("word " * 3000)]), "context window is 2048 tokens"),
])
async def test_malformed_request_is_invalid_argument(llm, req, needle):
    before = await status(llm.address)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(llm.address, req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()
    if "context" in needle:
        assert re.search(r"prompt is \d{4} tokens", err.value.details())
    assert (await status(llm.address)).active_streams == before.active_streams


async def test_background_never_queues_and_urgent_gets_the_next_free_instance(llm):
    """Both instances busy with long answers: a background request is refused at
    once (the priority field reached the pool), an urgent one waits and gets the
    first instance to free, long before the other long answer would end."""
    async with grpc.aio.insecure_channel(llm.address) as ch:
        stub = llm_pb2_grpc.ChatStub(ch)
        longs = [stub.Generate(llm_pb2.GenerateRequest(
            messages=[user(LONG)], max_tokens=400, sampling=llm_pb2.SamplingParams(seed=i)))
            for i in range(2)]
        for call in longs:                      # both hold an instance now
            r = await call.read()
            assert r.HasField("delta")
        t_bg = asyncio.get_running_loop().time()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await generate(llm.address, llm_pb2.GenerateRequest(
                messages=[user("Say hello.")], max_tokens=5, priority=common_pb2.PRIORITY_BACKGROUND))
        refused_after = asyncio.get_running_loop().time() - t_bg
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "never queues" in err.value.details()
        urgent = asyncio.create_task(generate(llm.address, llm_pb2.GenerateRequest(
            messages=[user("Say hello.")], max_tokens=5, priority=common_pb2.PRIORITY_URGENT)))
        await asyncio.sleep(0.3)
        assert not urgent.done(), "urgent request did not wait for an instance"
        longs[0].cancel()                       # frees one instance
        t_free = asyncio.get_running_loop().time()
        _, done = await asyncio.wait_for(urgent, 60)
        served_after = asyncio.get_running_loop().time() - t_free
        still_running = not longs[1].done()
        longs[1].cancel()
    print(f"background refused after {refused_after * 1000:.0f} ms; urgent served "
          f"{served_after * 1000:.0f} ms after an instance freed")
    assert done.finish_reason in ("stop", "length") and done.completion_tokens > 0
    assert still_running, "the other long answer ended first: nothing was compared"


@pytest.fixture
def llm_one_slot():
    with running("services.llm", "LLM_", {"LLM_INSTANCES": "1", "LLM_QUEUE": "0",
                                          "LLM_WARMUP": "false"}) as svc:
        yield svc


async def test_requests_beyond_instances_and_queue_are_resource_exhausted(llm_one_slot):
    svc = llm_one_slot
    async with grpc.aio.insecure_channel(svc.address) as ch:
        stub = llm_pb2_grpc.ChatStub(ch)
        hog = stub.Generate(llm_pb2.GenerateRequest(messages=[user(LONG)], max_tokens=1000))
        first = await hog.read()
        assert first.HasField("delta")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(llm_pb2.GenerateRequest(messages=[user("hi")])):
                pass
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in err.value.details()
        hog.cancel()


async def test_prefill_warms_the_cache_that_the_complete_turn_then_reuses(llm):
    """A turn still being spoken is evaluated into an instance's cache (nothing
    generated); the complete turn's answer finds that prompt there."""
    system = llm_pb2.ChatMessage(role="system", content="You answer in one short sentence.")
    spoken = "Tell me something interesting about the history of the lighthouse"
    pre = llm_pb2.GenerateRequest(messages=[system, user(spoken)], prefill=True, request_id="it-prefill")
    deltas, done = await generate(llm.address, pre)
    assert deltas == [] and done.finish_reason == "prefill" and done.completion_tokens == 0
    assert done.prompt_tokens > 10
    full = llm_pb2.GenerateRequest(messages=[system, user(spoken + " in Alexandria?")], max_tokens=8)
    deltas, answer = await generate(llm.address, full)
    assert "".join(d.text for d in deltas).strip()
    # Everything the prefill evaluated (the open prompt) is reused; only the rest is new.
    assert answer.cached_prompt_tokens >= done.prompt_tokens
    assert answer.prompt_tokens > answer.cached_prompt_tokens


async def test_prefill_after_an_answer_warms_the_next_turns_prompt(llm):
    """The gateway warms the cache with the conversation ending in the answer
    just given; the next turn's prompt then reuses all of it."""
    system = llm_pb2.ChatMessage(role="system", content="You answer in one short sentence.")
    history = [system, user("What is the capital of France?"),
               llm_pb2.ChatMessage(role="assistant", content="The capital of France is Paris.")]
    warm = llm_pb2.GenerateRequest(messages=history, prefill=True, request_id="it-warm")
    deltas, done = await generate(llm.address, warm)
    assert deltas == [] and done.finish_reason == "prefill" and done.prompt_tokens > 10
    nxt = llm_pb2.GenerateRequest(messages=history + [user("And of Spain?")], max_tokens=8)
    deltas, answer = await generate(llm.address, nxt)
    assert "".join(d.text for d in deltas).strip()
    assert answer.cached_prompt_tokens >= done.prompt_tokens
    assert answer.prompt_tokens > answer.cached_prompt_tokens


async def test_a_history_window_that_dropped_old_turns_reuses_the_rest_of_the_cache(llm):
    """Old turns leave the prompt (the gateway's history window moved): the
    instance shifts them out of its KV cache and reuses the remaining turns
    instead of evaluating them again (LLM_KV_SHIFT, services/llm/reuse.py)."""
    system = llm_pb2.ChatMessage(role="system", content="You answer in one short sentence.")
    facts = ["The lighthouse of Alexandria was one of the seven wonders of the ancient world.",
             "Bees communicate the direction of flowers to each other with a waggle dance.",
             "Copper turns green over the years because it slowly reacts with air and water.",
             "Owls can turn their heads about two hundred and seventy degrees in each direction."]
    history = []
    for i, fact in enumerate(facts):
        history += [user(f"Tell me fact number {i + 1}, please, in one sentence."),
                    llm_pb2.ChatMessage(role="assistant", content=fact)]
    first = llm_pb2.GenerateRequest(messages=[system] + history + [user("And another one?")], max_tokens=4)
    _, done1 = await generate(llm.address, first)
    moved = [system] + history[4:] + [user("Which of these facts do you like best?")]
    deltas, done2 = await generate(llm.address, llm_pb2.GenerateRequest(messages=moved, max_tokens=12))
    assert "".join(d.text for d in deltas).strip()
    # The system prompt alone is ~15 tokens; the two kept turns are far more.
    assert done2.cached_prompt_tokens >= done2.prompt_tokens - 20, (done2.cached_prompt_tokens, done2.prompt_tokens)
    assert done2.prompt_tokens < done1.prompt_tokens


async def test_a_conversation_longer_than_the_context_drops_its_oldest_turns(llm):
    """A token budget, not an item count: the oldest turns go, the answer keeps its room."""
    history = []
    for i in range(30):   # ~30 x 75 tokens, more than the 2048-token context
        history += [user(f"Question {i}: " + "tell me about the sea and the sky " * 4),
                    llm_pb2.ChatMessage(role="assistant", content="The sea is wide and the sky is high. " * 4)]
    req = llm_pb2.GenerateRequest(messages=history + [user("What did I ask first?")], max_tokens=8)
    deltas, done = await generate(llm.address, req)
    assert "".join(d.text for d in deltas).strip()
    assert 1000 < done.prompt_tokens <= 2048 - 256


async def test_prefill_without_a_user_or_assistant_message_last_is_invalid(llm):
    req = llm_pb2.GenerateRequest(messages=[user("hi"), llm_pb2.ChatMessage(role="tool", content="22 C")],
                                  prefill=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(llm.address, req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prefill needs a user message last" in err.value.details()


async def test_the_shipped_model_served_converted_to_q8_0(tmp_path):
    """LLM_REQUANTIZE=q8_0: the service converts the shipped GGUF into
    VOICE_MODELS_DIR at its start, says so in its status, and answers."""
    env = {"LLM_INSTANCES": "1", "LLM_REQUANTIZE": "q8_0", "VOICE_MODELS_DIR": str(tmp_path)}
    with running("services.llm", "LLM_", env) as svc:
        st = await status(svc.address)
        assert st.model.endswith(".gguf as q8_0"), st.model
        assert [p.name for p in (tmp_path / "llm").glob("*.q8_0.gguf")], "no converted file in VOICE_MODELS_DIR"
        deltas, done = await generate(svc.address, llm_pb2.GenerateRequest(
            messages=[user("What is the capital of France? Answer briefly.")], max_tokens=20,
            request_id="it-q8"))
        assert "".join(d.text for d in deltas).strip() and done is not None


async def test_long_prompts_evaluated_on_q8_0_with_the_shipped_weights_decoding(tmp_path):
    """LLM_FAST_PROMPT=q8_0: the shipped model stays what the service serves
    and decodes; a document question's passages are evaluated on the Q8_0
    copy (its metric counts them) and the answer streams."""
    env = {"LLM_INSTANCES": "1", "LLM_FAST_PROMPT": "q8_0", "VOICE_MODELS_DIR": str(tmp_path)}

    def fast_tokens(port: int) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        m = re.search(r'^voice_llm_fast_prompt_tokens_total\{[^}]*outcome="evaluated"[^}]*\} (\S+)$', body, re.M)
        return float(m.group(1)) if m else 0.0

    with running("services.llm", "LLM_", env) as svc:
        st = await status(svc.address)
        assert st.model == Path(default_model_path()).name, st.model   # served as shipped
        assert fast_tokens(svc.metrics_port) == 0      # the warm-up ran on the shipped weights
        guide = (ROOT / "docs" / "user-guide.md").read_text()
        passage = common_pb2.Passage(source="user-guide.md", title="Starting", text=guide[:1200])
        deltas, done = await generate(svc.address, llm_pb2.GenerateRequest(
            messages=[user("How do I start the assistant?")], passages=[passage], max_tokens=20,
            request_id="it-fast", sampling=llm_pb2.SamplingParams(temperature=0.0)))
        assert "".join(d.text for d in deltas).strip() and done.completion_tokens > 0
        # Every prompt token not in the cache but the last (the instance's own: its logits).
        assert fast_tokens(svc.metrics_port) == done.prompt_tokens - done.cached_prompt_tokens - 1 >= 100
