"""The answer eval's scoring (eval/answers/scoring.py, report.py).

Invariants: a key fact counts as stated only when one of its alternatives
is in the answer; declining is recognised in its usual wordings and a
plain answer is not taken for one; an invented command, key combination,
setting, path, address, number or name that no passage holds is reported,
and the same claim present in the passages (in another spelling of a key
combination, or in the question) is not; the summary counts recall, facts
and declines over the right subsets of questions."""
from __future__ import annotations

import re

import pytest

from eval.answers import report, scoring
from eval.answers.ask import Result

PASSAGES = [
    "Starting the assistant: open a terminal in the project folder and run: make run. "
    "When every part is ready the terminal prints assistant ready: open http://127.0.0.1:8000/.",
    "To stop the assistant, press Ctrl-C in that terminal. The index is stored in var/rag/. "
    "To use another folder start it with RAG_DOCS_DIR=/path/to/folder make run. 95 % of turns within 1.2 s.",
]


def facts(*alts: list[str]) -> list[list[re.Pattern]]:
    return [[re.compile(a, re.IGNORECASE) for a in fact] for fact in alts]


def test_a_fact_is_stated_by_any_of_its_alternatives_and_only_then():
    f = facts(["make run"], ["ctrl-c", "control-c"])
    assert scoring.fact_hits("Run `make run`, then stop it with Control-C.", f) == [True, True]
    assert scoring.fact_hits("Run make   run.", f) == [True, False]
    assert scoring.fact_hits("Run make start and press Escape.", f) == [False, False]


@pytest.mark.parametrize("text", [
    "I don't know.", "I do not know how to do that.", "Sorry, I’m not sure.",
    "The documents do not mention Slack.", "That isn't covered in the guide.",
    "I can't find anything about that.", "There is no information about pricing.",
])
def test_declining_is_recognised(text):
    assert scoring.says_unknown(text)


@pytest.mark.parametrize("text", [
    "Run make run in a terminal.", "Press Escape to stop the answer.",
    "Knowing the pause length helps: it is 500 ms.", "No account is needed.",
])
def test_a_plain_answer_is_not_taken_for_declining(text):
    assert not scoring.says_unknown(text)


def test_the_invented_answers_of_the_issue_are_caught():
    """Issue #12: asked how to start the assistant, it said to press Ctrl+P."""
    got = scoring.unsupported("To start the assistant, press Ctrl+P in a terminal.", PASSAGES,
                              "How do I start the assistant?")
    assert got == [("key", "Ctrl+P")]
    got = scoring.unsupported("Update the chatbot for voice-controlled web scraping with Selenium.",
                              PASSAGES, "What do I do when the latency alert fires?")
    assert ("name", "Selenium") in got


@pytest.mark.parametrize("answer,claims", [
    ("Run make start, then set GATEWAY_FOO_BAR to 5.",
     [("command", "make start"), ("setting", "GATEWAY_FOO_BAR"), ("number", "5")]),
    ("Edit docs/setup.md and open http://127.0.0.1:9000/.",
     [("address", "http://127.0.0.1:9000/"), ("path", "docs/setup.md")]),
    ("Use kubectl rollout restart and docker compose up.",
     [("command", "kubectl rollout restart"), ("command", "docker compose up")]),
    ("Install it with pip install voice.", [("command", "pip install")]),
])
def test_invented_specifics_are_reported(answer, claims):
    assert sorted(scoring.unsupported(answer, PASSAGES)) == sorted(claims)


@pytest.mark.parametrize("answer", [
    "Run `make run` and open http://127.0.0.1:8000/.",
    "Press Control + C to stop it.",          # another spelling of Ctrl-C
    "The index lives in var/rag, and/or set RAG_DOCS_DIR.",
    "95 % of turns answer within 1.2 seconds.",
    "Make sure you are in the project folder.",  # English "make", not the tool
])
def test_claims_the_passages_hold_are_not_reported(answer):
    assert scoring.unsupported(answer, PASSAGES) == []


def test_a_claim_from_the_question_is_not_reported():
    assert scoring.unsupported("Port 9000 is not mentioned.", [], "Is port 9000 used?") == []
    assert scoring.unsupported("Port 9000 is not mentioned.", [], "Which port is used?") == [("number", "9000")]


def test_novel_share_counts_content_words_found_nowhere():
    assert scoring.novel_share("Run make run in the terminal.", PASSAGES) == 0.0
    share = scoring.novel_share("Update the chatbot for web scraping.", PASSAGES)
    assert share == 1.0
    assert 0 < scoring.novel_share("Open a terminal and update the chatbot.", PASSAGES) < 1
    assert scoring.novel_share("", PASSAGES) == 0.0


def result(id_: str, answerable: bool, *, rank=None, facts=(), unknown=False, unsupported=(),
           used=(), ttft=100.0) -> Result:
    return Result(id=id_, question="q", answerable=answerable, sources=["a.md"] if answerable else [],
                  retrieved=[], hit_rank=rank, used=[{"source": s, "title": "", "score": 0.5} for s in used],
                  answer="x", facts=list(facts), unknown=unknown, unsupported=[list(c) for c in unsupported],
                  novel_share=0.5, ttft_ms=ttft, total_ms=ttft * 3, gateway_ms={}, status="completed")


def test_the_summary_counts_each_figure_over_its_own_questions():
    rs = [
        result("a", True, rank=1, facts=[True, True], used=["a.md"]),
        result("b", True, rank=4, facts=[True, False], unsupported=[("key", "Ctrl+P")], used=["b.md"]),
        result("c", True, rank=None, facts=[False], unknown=True),
        result("d", False, unknown=True, ttft=300.0),
        result("e", False, unsupported=[("name", "Slack")]),
    ]
    s = report.summary(rs)
    assert s["recall_at"] == {"1": round(1 / 3, 3), "3": round(1 / 3, 3), "5": round(2 / 3, 3)}
    assert s["source_in_used_passages"] == round(1 / 3, 3)
    assert s["all_key_facts"] == round(1 / 3, 3)
    assert s["key_fact_share"] == 0.6
    assert s["declined_in_documents"] == round(1 / 3, 3)
    assert s["unsupported_claims"] == round(1 / 3, 3)
    assert s["declined_outside"] == 0.5 and s["unsupported_claims_outside"] == 0.5
    assert s["ttft_ms"]["max"] == 300.0 and s["failed"] == 0
    assert "b" in report.table(rs) and "Ctrl+P" in report.table(rs)


def test_runs_compare_side_by_side_with_shares_as_percentages():
    from eval.answers import compare
    a = {"label": "before", "summary": report.summary([result("a", True, rank=1, facts=[True])])}
    b = {"label": "after", "summary": report.summary([result("a", True, rank=2, facts=[False])])}
    md = compare.markdown([a, b])
    assert md.splitlines()[0] == "| | before | after |"
    assert "| recall@1 (source doc in top passage) | 100 % | 0 % |" in md
    assert "| time to first token p50 (ms) | 100 | 100 |" in md
