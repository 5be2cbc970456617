"""LLM prefill while the user speaks, on a virtual clock.

Invariants: as interims come in, the LLM is sent the history the answer will
have, with the words heard so far minus the last (it may still change), so
its cache already holds most of the answer's prompt when the turn ends; one
request at a time, only growing texts; none while a reply is playing (a
barge-in may rewrite the history) until the barge-in is confirmed and the
reply cut, and then with the cut history; none when the setting is off. The
answer itself sees the complete turn."""
from __future__ import annotations

from common.clock import VirtualClock
from services.gateway.backends.types import Passage, conversation_key
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_preempt import metric

QUESTION = "what is the weather like today in the city"
LONG = " ".join(["The weather is fine and sunny all day long."] * 6)
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)


def session(speech, texts, replies=("Fine, thanks.",), **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=replies)
    b.llm.token_s = 0.02
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))


def speech_prefills(s: ScriptedSession) -> list:
    """Prefills of a turn being spoken (not the warm-ups after an answer)."""
    return [m for m, rid in zip(s.b.llm.prefills, s.b.llm.prefill_ids) if "-warm-" not in rid]


def warm_ups(s: ScriptedSession) -> list:
    return [m for m, rid in zip(s.b.llm.prefills, s.b.llm.prefill_ids) if "-warm-" in rid]


def user_texts(messages) -> list[str]:
    return [m.content for m in messages if m.role == "user"]


async def test_the_llm_is_warmed_with_the_growing_turn_and_the_answer_sees_it_whole():
    async with session([(0.5, 3.0)], [QUESTION]) as s:
        await s.run_audio(6.0)
        prefills = [user_texts(m)[-1] for m in speech_prefills(s)]
        assert prefills, "no prefill while the user spoke"
        # Each is a growing prefix of the question, without the word still being heard.
        words = QUESTION.split()
        for a, b in zip(prefills, prefills[1:]):
            assert len(b.split()) > len(a.split())
        for p in prefills:
            n = len(p.split())
            assert 3 <= n < len(words) and p == " ".join(words[:n])
        # The same history as the answer, up to the user's (then complete) turn.
        answer = s.b.llm.requests[0]
        assert user_texts(answer) == [QUESTION]
        assert [m.role for m in speech_prefills(s)[-1]] == [m.role for m in answer]
        assert speech_prefills(s)[-1][:-1] == answer[:-1]


async def test_no_prefill_when_off_or_while_a_reply_plays():
    async with session([(0.5, 3.0)], [QUESTION], llm_prefill=False) as s:
        await s.run_audio(6.0)
        assert s.b.llm.prefills == [] and len(s.b.llm.requests) == 1
    # A long reply is playing when the user talks over it: nothing is warmed
    # until the barge-in is confirmed and the reply cut; then the turn warms
    # with the history the answer will see (the reply as it was cut).
    async with session([(0.5, 1.5), (4.0, 6.5)], ["tell me a story", QUESTION],
                       replies=(LONG, "Fine.")) as s:
        await s.run_audio(4.0)
        before = len(speech_prefills(s))
        await s.run_audio(0.3)      # the barge-in's first 300 ms: not confirmed yet
        assert len(speech_prefills(s)) == before
        await s.run_audio(4.0)      # the rest of it, the cut, the answer
        barge = speech_prefills(s)[before:]
        assert barge, "a confirmed barge-in turn warmed nothing"
        answer = s.b.llm.requests[-1]
        assert user_texts(answer)[-1] == QUESTION
        cut = [m.content for m in answer if m.role == "assistant"]
        assert cut and len(cut[0]) < len(LONG)           # the reply as it was cut
        for p in barge:
            assert p[:-1] == answer[:-1]                 # the answer's history, up to the growing turn


async def text_turn(s: ScriptedSession, text: str) -> None:
    await s.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await s.send({"type": "response.create"})
    await s.wait(3.0)


async def test_after_each_answer_the_next_turns_prompt_is_warmed():
    """Invariant: when an answer is generated, the LLM is sent the history the
    next turn's answer will start with (ending in this answer), so the next
    first token pays only for the new words; across a window move (history.py)
    too, so the move is paid in the background and not by the next answer."""
    replies = tuple(f"Answer number {i}." for i in range(12))
    async with session([], [], replies=replies, history_items=6) as s:
        for i in range(8):
            await text_turn(s, f"question number {i}")
        answers, warms = s.b.llm.requests, warm_ups(s)
        assert len(answers) == 8 and len(warms) == 8
        for i in range(7):
            # What was warmed after answer i is the prefix of answer i+1's prompt.
            nxt = answers[i + 1]
            assert warms[i][-1].role == "assistant" and warms[i][-1].content == replies[i]
            assert nxt[:len(warms[i])] == warms[i], i
            assert nxt[len(warms[i]):] == [nxt[-1]] and nxt[-1].role == "user"
        # The window moved (6 items kept at most, moved by 3): the warm-up saw it first.
        assert answers[7][1].content != answers[0][1].content


async def test_no_warm_up_when_prefill_is_off_or_the_answer_was_out_of_band():
    async with session([], [], replies=("Fine.",), llm_prefill=False) as s:
        await text_turn(s, "how are you")
        assert s.b.llm.prefills == [] and len(s.b.llm.requests) == 1
    async with session([], [], replies=("Fine.",)) as s:
        await s.send({"type": "response.create", "response": {"conversation": "none", "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}})
        await s.wait(3.0)
        assert len(s.b.llm.requests) == 1 and warm_ups(s) == []


async def test_a_cancelled_answer_leaves_no_task_waiting_for_it():
    """Invariant: the warm-up after an answer is started by the completed answer
    itself; an answer cancelled before it completes (a barge-in, response.cancel)
    leaves nothing behind waiting for it until the session closes."""
    async with session([], [], replies=(LONG,) * 6) as s:
        s.b.llm.token_s = 0.2
        for i in range(5):
            await s.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"q {i}"}]}})
            await s.send({"type": "response.create"})
            await s.wait(0.5)
            await s.send({"type": "response.cancel"})
            await s.wait(1.0)
        assert len(s.of("response.done")) == 5
        assert all(t.event["response"]["status"] == "cancelled" for t in s.of("response.done"))
        lingering = [t.get_name() for t in s.conv._tasks if "llm-warm" in t.get_name()]
        assert lingering == [] and warm_ups(s) == []


def doc_session(retrieval: bool = True, **settings) -> ScriptedSession:
    clock = VirtualClock()
    docs = [Passage("user-guide.md", "Starting", "Run make run, then open the page.", 0.8),
            Passage("faq.md", "Parking", "Park behind the shop.", 0.1)]
    b = FakeBackends.create(clock, speech=[(0.5, 3.0)], texts=[QUESTION], passages=docs)
    b.llm.token_s = 0.02
    # The fake RAG returns these passages for any words: the "outside the
    # documents" rule (grounding.py, tested in test_gateway_grounding.py) is off
    # here, where what is tested is which passages travel where.
    s = ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | {"retrieval": retrieval, "rag_decline_below": 0.0}
                                                     | settings)))
    s.conv.state.config.retrieval_enabled = retrieval
    return s


async def test_a_question_is_warmed_with_the_passages_its_words_retrieve():
    """Invariant: while the user speaks, each prefill quotes the passages that
    retrieval finds for the words so far, with the answer's score floor, so a
    question about the documents has its passages (most of its prompt) in the
    LLM's cache when the turn ends; the answer retrieves again for the whole
    question and is given the same passages."""
    async with doc_session() as s:
        await s.run_audio(6.0)
        warm = [(m, p) for m, p, rid in zip(s.b.llm.prefills, s.b.llm.prefill_passages, s.b.llm.prefill_ids)
                if "-warm-" not in rid]
        assert warm, "no prefill while the user spoke"
        assert all([x.title for x in p] == ["Starting"] for _, p in warm)
        assert [x.title for x in s.b.llm.passages[0]] == ["Starting"]
        # Searched with every word heard at each prefill (the quoted turn stops
        # before the last, which may still change), then with the whole question.
        assert s.b.rag.queries[-1] == QUESTION
        assert [q.rsplit(" ", 1)[0] for q in s.b.rag.queries[:-1]] == [user_texts(m)[-1] for m, _ in warm]
        assert all(QUESTION.startswith(q) for q in s.b.rag.queries[:-1])


async def test_no_retrieval_while_speaking_when_the_session_does_not_retrieve():
    async with doc_session(retrieval=False) as s:
        await s.run_audio(6.0)
        assert speech_prefills(s) and all(p == [] for p in s.b.llm.prefill_passages)
        assert s.b.rag.queries == [] and s.b.llm.passages[0] == []
    # The setting off: the prefill quotes nothing, only the answer retrieves.
    async with doc_session(prefill_retrieval=False) as s:
        await s.run_audio(6.0)
        assert speech_prefills(s) and all(p == [] for p in s.b.llm.prefill_passages)
        assert s.b.rag.queries == [QUESTION] and [x.title for x in s.b.llm.passages[0]] == ["Starting"]


async def test_the_answer_quotes_the_sentences_its_prefill_quoted():
    """Invariant: when the answer's retrieval finds the passages its last
    prefill quoted, it asks for the sentences chosen by that prefill's words
    (passage_query), so its prompt is the prefill's up to the question."""
    async with doc_session() as s:
        await s.run_audio(6.0)
        chosen_by = [q for q, p, rid in zip(s.b.llm.prefill_passage_queries, s.b.llm.prefill_passages,
                                            s.b.llm.prefill_ids) if "-warm-" not in rid and p]
        assert chosen_by and s.b.llm.passage_queries[0] == chosen_by[-1]
        assert QUESTION.startswith(chosen_by[-1])


async def test_without_a_prefill_of_those_passages_the_answer_chooses_by_its_own_words():
    async with doc_session(prefill_retrieval=False) as s:
        await s.run_audio(6.0)
        assert s.b.llm.passages[0] and s.b.llm.passage_queries == [""]


def test_a_prefills_words_are_used_only_for_its_own_turn_passages_and_question():
    s = doc_session()
    p1, p2 = s.b.rag.passages
    s.conv.planner._quoted = ("item_1", "how do I start the", ((p1.source, p1.title, p1.text),), [p1])
    def pq(item_id: str, query: str, passages: list[Passage]) -> str:   # the words the answer chooses by
        return s.conv.planner.quote(item_id, query, passages)[1]
    assert pq("item_1", "How do I start the assistant?", [p1]) == "how do I start the"
    assert pq("item_1", "How do I start them?", [p1]) == "how do I start the"   # the last word heard may change
    rescored = Passage(p1.source, p1.title, p1.text, 0.42)      # found by other words: another score
    assert pq("item_1", "How do I start the assistant?", [rescored]) == "how do I start the"
    assert pq("item_1", "How do I start the assistant?", [p1, p2]) == ""        # other passages
    assert pq("item_1", "How do I stop the assistant?", [p1]) == ""              # other words
    assert pq("item_1", "How do I start the assistant?", []) == ""
    assert pq("item_2", "How do I start the assistant?", [p1]) == ""             # another turn


def test_an_answer_keeps_its_prefills_passages_where_the_final_agrees():
    """Invariant: an answer whose own retrieval found the prefill's passages
    but one, its best among them, or the same ones in another order, quotes
    the prefill's (in its order, chosen by its words), so its prompt is the
    prefill's up to the question; with its best passage not among them, or
    only one shared, it quotes its own. On the stack 7 of 12 document answers
    quoted other passages than their prefill, 5 of them sharing two or three
    of three (docs/capacity-rechecks.md, re-check 28)."""
    s = doc_session()
    p1, p2 = s.b.rag.passages
    p3, p4, p5 = (Passage(f"doc{i}.md", f"Part {i}", f"Text {i}.", 0.5) for i in (3, 4, 5))
    keys = tuple((p.source, p.title, p.text) for p in (p1, p2, p3))
    s.conv.planner._quoted = ("item_1", "how do I start the", keys, [p1, p2, p3])
    quote = s.conv.planner.quote
    q = "How do I start the assistant?"
    assert quote("item_1", q, [p1, p2, p4]) == ([p1, p2, p3], "how do I start the")   # one passage more or less
    assert quote("item_1", q, [p2, p1, p3]) == ([p1, p2, p3], "how do I start the")   # the same, reordered
    assert quote("item_1", q, [p4, p1, p2]) == ([p4, p1, p2], "")      # its best passage is not among them
    assert quote("item_1", q, [p1, p4, p5]) == ([p1, p4, p5], "")      # only one shared
    assert quote("item_1", "How do I stop the assistant?", [p1, p2, p4]) == ([p1, p2, p4], "")   # other words
    assert quote("item_2", q, [p1, p2, p4]) == ([p1, p2, p4], "")      # another turn


async def test_a_newer_interim_that_finds_other_passages_replaces_the_running_prefill():
    """Invariant: while a prefill that quotes passages runs, a newer interim
    is searched too; other passages replace (cancel) the running prefill, the
    same passages leave it running. The latest words are the likeliest to
    retrieve what the whole question will."""
    s = doc_session()
    early, late = s.b.rag.passages
    late = Passage(late.source, late.title, late.text, 0.9)

    async def search(query: str, k: int, min_score: float) -> list[Passage]:
        s.b.rag.queries.append(query)
        # The same passages found by other words come with other scores (a real index).
        score = 0.5 + 0.01 * len(query.split())
        found = early if len(query.split()) < 6 else late
        return [Passage(found.source, found.title, found.text, score)]

    s.b.rag.search = search
    s.b.llm.prefill_s = 10.0          # longer than the question: only a replacement ends one
    before = metric("voice_gateway_llm_prefills_total", outcome="replaced")
    async with s:
        await s.run_audio(6.0)
        quoted = [[p.title for p in ps] for ps, rid in zip(s.b.llm.prefill_passages, s.b.llm.prefill_ids)
                  if "-warm-" not in rid]
        assert quoted == [["Starting"], ["Parking"]], quoted    # replaced once, then kept
        assert len(s.b.rag.queries) > len(quoted) + 1           # later interims searched, same passages kept
        assert metric("voice_gateway_llm_prefills_total", outcome="replaced") == before + 1


async def test_an_answer_requested_while_its_prefill_runs_quotes_as_that_prefill_does():
    """The LLM lets such an answer wait for the prefill's instance only if
    both prompts start the same: the prefill's words count from its start."""
    s = doc_session()
    s.b.llm.prefill_s = 10.0          # still running when the turn ends
    async with s:
        await s.run_audio(6.0)
        chosen_by = [q for q, p, rid in zip(s.b.llm.prefill_passage_queries, s.b.llm.prefill_passages,
                                            s.b.llm.prefill_ids) if "-warm-" not in rid and p]
        assert chosen_by and s.b.llm.passage_queries[0] == chosen_by[-1]


async def test_a_replacement_whose_search_ends_after_the_turn_leaves_the_running_prefill():
    """Invariant: a newer interim's search that comes back once the turn has
    ended replaces nothing: the answer has chosen its passages by then, maybe
    the running prefill's, and cancelling that prefill would only take its
    cache away from the answer waiting for it."""
    s = doc_session()
    early, late = s.b.rag.passages

    async def search(query: str, k: int, min_score: float) -> list[Passage]:
        s.b.rag.queries.append(query)
        if query != QUESTION and len(query.split()) >= 6:
            await s.clock.sleep(5.0)      # the newer words' search outlives the turn
            return [Passage(late.source, late.title, late.text, 0.9)]
        return [early]

    s.b.rag.search = search
    s.b.llm.prefill_s = 10.0
    before = metric("voice_gateway_llm_prefills_total", outcome="replaced")
    async with s:
        await s.run_audio(12.0)
        runs = [(q, [p.title for p in ps]) for q, ps, rid in zip(
            s.b.llm.prefill_passage_queries, s.b.llm.prefill_passages, s.b.llm.prefill_ids) if "-warm-" not in rid]
        assert [titles for _, titles in runs] == [["Starting"]], runs
        assert metric("voice_gateway_llm_prefills_total", outcome="replaced") == before
        assert [p.title for p in s.b.llm.passages[0]] == ["Starting"]
        assert s.b.llm.passage_queries[0] == runs[0][0]     # quotes as the prefill it can wait for


async def test_a_sessions_prefills_and_answers_name_one_conversation_key_not_its_id():
    """The LLM may let a prefill replace what its own conversation left in an
    instance (services/llm/pool.py): every request of a session carries the
    session's key, and the key is not the session id (which resumes it)."""
    async with session([(0.5, 3.0)], [QUESTION]) as s:
        await s.run_audio(6.0)
        await text_turn(s, "and tomorrow")
        assert speech_prefills(s) and warm_ups(s) and len(s.b.llm.requests) == 2
        assert set(s.b.llm.conversations) == {conversation_key(s.conv.state.id)}
        key = s.b.llm.conversations[0]
        assert len(key) == 16 and s.conv.state.id not in key and key not in s.conv.state.id
    assert conversation_key("sess_a") != conversation_key("sess_b")
