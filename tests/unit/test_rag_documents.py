"""Documents as people have them: PDF (page by page, each passage citing its
page), HTML (visible text only, headings as section titles) and DOCX
(headings by style) are indexed next to Markdown and text; a file that
cannot be read is logged by name and the rest of the folder is indexed; a
document added, changed or deleted while the service runs is picked up
without a restart (engine.refresh, what the watcher thread calls)."""
from __future__ import annotations

import logging
from pathlib import Path

import docx

from services.rag import documents
from services.rag.engine import RagConfig, RagEngine
from services.rag.fake import HashingEmbedder
from services.rag.schema import SearchRequest


def write_pdf(path: Path, pages: list[str]) -> None:
    """A minimal text-layer PDF, one line of Helvetica per page (written by
    hand: the parser must read what real PDF writers emit, not its own)."""
    objs: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                    f"<< /Font << /F1 {font} 0 R >> >> /Contents {4 + 2 * i} 0 R >>".encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(bytes(out))


def write_docx(path: Path) -> None:
    d = docx.Document()
    d.add_heading("Warranty", level=1)
    d.add_paragraph("The warranty covers the speaker for three years from purchase.")
    d.add_heading("Returns", level=2)
    d.add_paragraph("Returns are accepted within thirty days with the receipt.")
    d.save(str(path))


HTML = """<html><head><title>Kitchen timer</title><style>.x{color:red}</style>
<script>var secret = "never indexed";</script></head><body>
<nav><ul><li>Home</li></ul></nav>
<h2>Setting a timer</h2><p>Turn the dial to the minutes you want, then press
<b>start</b>.</p><h2>Battery</h2><p>The timer runs on one AAA battery.</p></body></html>"""


def test_pdf_pages_html_and_docx_are_read_as_text(tmp_path):
    write_pdf(tmp_path / "manual.pdf", ["The fan has three speeds.", "Clean the filter every month."])
    parts = documents.read(tmp_path / "manual.pdf")
    assert [(p.page, p.text) for p in parts] == [(1, "The fan has three speeds."),
                                                 (2, "Clean the filter every month.")]
    (tmp_path / "timer.html").write_text(HTML)
    [page] = documents.read(tmp_path / "timer.html")
    assert page.markdown and "never indexed" not in page.text and "color" not in page.text
    assert page.text.startswith("# Kitchen timer") and "## Setting a timer" in page.text
    assert "Turn the dial to the minutes you want, then press start." in page.text
    write_docx(tmp_path / "warranty.docx")
    [doc] = documents.read(tmp_path / "warranty.docx")
    assert doc.text.splitlines()[0] == "# Warranty" and "## Returns" in doc.text


def engine(docs: Path, tmp_path: Path) -> RagEngine:
    return RagEngine(HashingEmbedder(), RagConfig(docs, tmp_path / "index", default_k=3))


def test_every_kind_is_indexed_and_a_pdf_passage_cites_its_page(tmp_path, caplog):
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(docs / "manual.pdf", ["The fan has three speeds.", "Clean the filter every month."])
    (docs / "timer.html").write_text(HTML)
    write_docx(docs / "warranty.docx")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF")
    (docs / "notes.md").write_text("# Notes\n\nThe door code is on the fridge.\n")
    with caplog.at_level(logging.WARNING):
        e = engine(docs, tmp_path)
    assert any("broken.pdf could not be read" in r.getMessage() for r in caplog.records), caplog.text
    assert {c.source for c in e.index.chunks} == {"manual.pdf", "timer.html", "warranty.docx", "notes.md"}
    top = e.search(SearchRequest(query="Clean the filter every month", k=1))[0].chunk
    assert (top.source, top.page, top.cited()) == ("manual.pdf", 2, "manual.pdf#page=2")
    top = e.search(SearchRequest(query="Returns are accepted within thirty days", k=1))[0].chunk
    assert (top.source, top.title) == ("warranty.docx", "Returns")


def test_documents_added_changed_and_deleted_while_running_are_picked_up(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe blue door opens at nine.\n")
    e = engine(docs, tmp_path)
    assert e.refresh() is False                      # nothing changed: no rebuild
    write_docx(docs / "warranty.docx")
    assert e.refresh() is True
    assert "warranty.docx" in {c.source for c in e.index.chunks}
    (docs / "a.md").write_text("# A\n\nThe red door opens at ten and closes at six.\n")
    assert e.refresh() is True
    texts = " ".join(c.text for c in e.index.chunks if c.source == "a.md")
    assert "red door" in texts and "blue door" not in texts
    (docs / "warranty.docx").unlink()
    assert e.refresh() is True
    assert {c.source for c in e.index.chunks} == {"a.md"}
