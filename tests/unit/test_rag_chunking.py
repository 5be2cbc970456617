"""Invariant: documents are cut at headings and paragraphs into passages of
about min..max words that never span two sections, each titled with its
nearest heading, in document order, losing no text; markdown syntax that is
not speech (links, emphasis, code fences) is reduced to plain text."""
from __future__ import annotations

import re

from services.rag.chunking import ChunkingConfig, chunk_document, plain

CFG = ChunkingConfig(min_words=60, target_words=120, max_words=200)


def para(word: str, n: int) -> str:
    return " ".join(f"{word}{i}" for i in range(n)) + "."


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_each_chunk_is_titled_by_its_nearest_heading_and_never_spans_sections():
    doc = f"# Guide\n\nIntro {para('a', 30)}\n\n## Barge-in\n\n{para('b', 50)}\n\n### Details\n\n{para('c', 40)}\n"
    chunks = chunk_document(doc, "guide.md", CFG)
    assert [c.title for c in chunks] == ["Guide", "Barge-in", "Details"]
    assert "b0" in chunks[1].text and "a0" not in chunks[1].text and "c0" not in chunks[1].text


def test_long_sections_are_packed_between_min_and_max_words():
    body = "\n\n".join(para(f"p{i}x", 45) for i in range(12))   # 540 words, 12 paragraphs
    chunks = chunk_document(f"# Long\n\n{body}\n", "long.md", CFG)
    sizes = [len(c.text.split()) for c in chunks]
    assert len(chunks) >= 3
    assert all(CFG.min_words <= s <= CFG.max_words for s in sizes), sizes


def test_a_single_huge_paragraph_is_split_by_sentences():
    sentences = " ".join(f"Sentence number {i} says something about the topic here." for i in range(80))
    chunks = chunk_document(f"# Wall\n\n{sentences}\n", "wall.md", CFG)
    assert len(chunks) >= 3
    assert all(len(c.text.split()) <= CFG.max_words for c in chunks)
    assert all(c.text.rstrip().endswith(".") for c in chunks)  # cut between sentences


def test_no_text_is_lost_and_order_is_kept():
    doc = "\n\n".join([f"# T{i}\n\n{para(f's{i}w', 70)}\n\n{para(f's{i}v', 90)}" for i in range(3)])
    chunks = chunk_document(doc, "x.md", CFG)
    expected = [w for w in words(doc) if not re.fullmatch(r"T\d", w)]
    assert [w for c in chunks for w in words(c.text)] == expected
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert all(c.source == "x.md" for c in chunks)


def test_short_tail_merges_into_the_previous_chunk_of_its_section():
    doc = f"# S\n\n{para('a', 110)}\n\n{para('b', 15)}\n"
    chunks = chunk_document(doc, "s.md", CFG)
    assert len(chunks) == 1 and "b14" in chunks[0].text


def test_text_before_any_heading_is_titled_by_the_file_name():
    chunks = chunk_document(f"{para('w', 20)}\n\n# Later\n\n{para('z', 20)}", "docs/getting-started.md", CFG)
    assert chunks[0].title == "getting started"


def test_heading_like_lines_inside_code_fences_are_not_headings():
    doc = "# Real\n\nRun this:\n\n```\n# not a heading\nmake run\n```\n\nThen open the page.\n"
    chunks = chunk_document(doc, "c.md", CFG)
    assert [c.title for c in chunks] == ["Real"]
    assert "# not a heading\nmake run" in chunks[0].text and "```" not in chunks[0].text


def test_markdown_links_and_emphasis_become_plain_text():
    assert plain("See **the [runbook](runbooks/x.md)** and `make run`") == "See the runbook and make run"


def test_plain_text_files_use_a_short_first_line_as_title():
    chunks = chunk_document(f"Release notes\n\n{para('r', 30)}\n", "notes.txt", CFG)
    assert chunks[0].title == "Release notes"
    chunks = chunk_document(f"{para('q', 30)}\n", "misc_notes.txt", CFG)
    assert chunks[0].title == "misc notes"


def test_empty_sections_produce_no_chunks():
    assert chunk_document("# A\n\n## B\n\n", "e.md", CFG) == []


def test_hard_wrapped_lines_are_unwrapped_but_list_items_stay_separate():
    doc = "# Wrap\n\nThis sentence is\nwrapped over\nthree lines.\n\n- first item\n  continues here\n- second item\n"
    [chunk] = chunk_document(doc, "w.md", CFG)
    assert "This sentence is wrapped over three lines." in chunk.text
    assert "- first item continues here\n- second item" in chunk.text
