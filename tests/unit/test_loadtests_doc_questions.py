"""The load test's document questions are the answer eval's answerable ones,
spoken once into a folder of clips the Locust users load like the recorded
ones; a clip already spoken for the same text is kept, one whose question
changed is spoken again."""
from __future__ import annotations

import asyncio

from clients.clips import load_clips
from eval.answers.questions import load
from loadtests import doc_questions


def test_every_answerable_question_becomes_a_clip_and_is_spoken_once(tmp_path, monkeypatch):
    spoken: list[str] = []

    async def speak(address, text, rate):
        spoken.append(text)
        return b"\x00\x00" * 800 + b"\x00\x30" * 1600 + b"\x00\x00" * 800

    monkeypatch.setattr(doc_questions, "speak", speak)
    questions = load()
    wanted = [q.question for q in questions if q.answerable]
    assert 30 <= len(wanted) < len(questions)      # the declined ones are left out
    paths = asyncio.run(doc_questions.prepare("tts:1", tmp_path))
    assert spoken == wanted and len(paths) == len(wanted)
    clips = load_clips(tmp_path, rate=doc_questions.RATE)
    assert [c.text for c in clips] == wanted     # names sort in question order
    assert all(c.span.last_sample > c.span.first_sample for c in clips)
    spoken.clear()
    asyncio.run(doc_questions.prepare("tts:1", tmp_path))
    assert spoken == []                             # kept
    paths[0].with_suffix(".txt").write_text("another question\n")
    asyncio.run(doc_questions.prepare("tts:1", tmp_path))
    assert spoken == [wanted[0]]                    # the changed one is spoken again
    (tmp_path / "doc-99-gone.wav").write_bytes(paths[0].read_bytes())   # a question since removed
    (tmp_path / "doc-99-gone.txt").write_text("a question no longer asked\n")
    asyncio.run(doc_questions.prepare("tts:1", tmp_path))
    assert sorted(tmp_path.glob("*.wav")) == sorted(paths)
