"""Invariant: ``passage_query`` travels from the gateway through the proto to
the LLM engine's request (answers and prefills), and the engine builds the
prompt with it: an answer given its prefill's words has the prefill's
prompt as its prefix up to the question; without them it may not."""
from __future__ import annotations

from common.stubs import llm_pb2
from services.gateway.backends import convert
from services.gateway.backends.types import ChatMessage as GwMessage, Passage as GwPassage
from services.llm import convert as llm_convert
from services.llm.engine import EngineConfig, LlmEngine
from services.llm.fake import ScriptedInstance, ScriptedTokenizer
from services.llm.schema import ChatMessage, GenerateRequest, Passage

DOC = Passage(source="canary.md", title="Canary releases",
              text="A canary gets a share of the sessions. The weight steps from 5 to 100 percent. "
                   "Rollback sets the weight to zero when the judge fails. It works by hashing the session id.")
QUESTION = "how does the canary release work"
HEARD = "how does the canary"


def test_the_wire_carries_passage_query_for_answers_and_prefills():
    msgs = [GwMessage("user", QUESTION)]
    docs = [GwPassage(DOC.source, DOC.title, DOC.text, 0.7)]
    for pb in (convert.generate_request(msgs, docs, 10, "r", passage_query=HEARD),
               convert.prefill_request(msgs, "p", docs, passage_query=HEARD)):
        req = llm_convert.request_from_pb(llm_pb2.GenerateRequest.FromString(pb.SerializeToString()))
        assert req.passage_query == HEARD
    assert llm_convert.request_from_pb(convert.generate_request(msgs, docs, 10, "r")).passage_query == ""


def test_the_wire_carries_the_conversation_key_for_answers_and_prefills():
    msgs = [GwMessage("user", QUESTION)]
    for pb in (convert.generate_request(msgs, [], 10, "r", conversation="c0ffee"),
               convert.prefill_request(msgs, "p", conversation="c0ffee")):
        req = llm_convert.request_from_pb(llm_pb2.GenerateRequest.FromString(pb.SerializeToString()))
        assert req.conversation == "c0ffee"
    assert llm_convert.request_from_pb(convert.generate_request(msgs, [], 10, "r")).conversation == ""


def test_the_engine_quotes_by_the_prefills_words_so_the_prompts_share_the_passages():
    tok = ScriptedTokenizer()
    eng = LlmEngine(tok, [ScriptedInstance(["ok"])], EngineConfig(passage_words=16))
    prefill = eng.prepare_prefill(GenerateRequest(messages=(ChatMessage("user", HEARD),), passages=(DOC,),
                                                  prefill=True))
    given = eng.prepare(GenerateRequest(messages=(ChatMessage("user", QUESTION),), passages=(DOC,),
                                        passage_query=HEARD)).prompt
    own = eng.prepare(GenerateRequest(messages=(ChatMessage("user", QUESTION),), passages=(DOC,))).prompt
    quoted = len(prefill) - len(HEARD.split())       # the prefill's prompt up to its question's words
    assert given[:quoted] == prefill[:quoted]
    assert own[:quoted] != prefill[:quoted]           # chosen by the whole question: other sentences
    eng.close()
