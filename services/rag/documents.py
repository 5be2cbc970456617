"""The text of one document in the folder, by its kind. Markdown and text
as they are; PDF page by page (pypdf: pure Python, no dependencies,
maintained; text-layer PDFs only, a scanned page has no text and gives
none), so a passage can cite its page; HTML through the standard library's
parser (no dependency: visible text only, headings and blocks kept as
Markdown so sections get their titles); DOCX through python-docx (the
maintained reader of Word's XML), headings by their style as Markdown.

A file that cannot be read raises Unreadable with the reason; the index logs
it and indexes the rest of the folder."""
from __future__ import annotations

import dataclasses
import html
import re
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = (".md", ".markdown", ".txt", ".pdf", ".html", ".htm", ".docx")


class Unreadable(Exception):
    """The file could not be read as its kind; the message says why."""


@dataclasses.dataclass(frozen=True)
class Part:
    """Text of one document (or of one page of it), ready for chunking."""
    text: str
    markdown: bool      # headings are "#" lines (sections take their titles)
    page: int = 0       # 1-based PDF page; 0 = not paged


def read(path: Path) -> list[Part]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".md", ".markdown"):
            return [Part(path.read_text(encoding="utf-8", errors="replace"), True)]
        if suffix == ".txt":
            return [Part(path.read_text(encoding="utf-8", errors="replace"), False)]
        if suffix == ".pdf":
            return _pdf(path)
        if suffix in (".html", ".htm"):
            return [Part(html_to_markdown(path.read_text(encoding="utf-8", errors="replace")), True)]
        if suffix == ".docx":
            return [Part(_docx(path), True)]
    except Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser's error on one bad file, reported by name
        raise Unreadable(f"{type(exc).__name__}: {exc}") from exc
    raise Unreadable(f"unsupported kind {suffix!r} (indexed: {', '.join(SUFFIXES)})")


def _pdf(path: Path) -> list[Part]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception as exc:  # noqa: BLE001
            raise Unreadable(f"encrypted PDF ({exc})") from exc
    parts = [Part(_clean(page.extract_text() or ""), False, i) for i, page in enumerate(reader.pages, 1)]
    return [p for p in parts if p.text.strip()]


def _clean(text: str) -> str:
    # Lines of a PDF page are broken where the layout broke them: join a
    # paragraph's lines, keep blank-line paragraph breaks, undo hyphenation.
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    paras = [" ".join(ln.strip() for ln in block.splitlines() if ln.strip())
             for block in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)


def _docx(path: Path) -> str:
    import docx

    doc = docx.Document(str(path))
    out: list[str] = []
    for para in doc.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        m = re.match(r"Heading (\d)", style)
        if m:
            out.append("#" * int(m.group(1)) + " " + text)
        elif style == "Title":
            out.append("# " + text)
        else:
            out.append(text)
    for table in doc.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                out.append(" | ".join(cells))
    return "\n\n".join(out)


_BLOCKS = {"p", "div", "section", "article", "li", "tr", "br", "pre", "blockquote", "table",
           "ul", "ol", "dd", "dt", "header", "footer", "main", "figcaption"}
_SKIP = {"script", "style", "noscript", "template", "svg", "head"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.cur: list[str] = []
        self.skip = 0
        self.heading = 0
        self.title: list[str] = []
        self.in_title = False

    def _flush(self) -> None:
        text = " ".join("".join(self.cur).split())
        self.cur = []
        if text:
            self.out.append(("#" * self.heading + " " + text) if self.heading else text)

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = 0
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip:
            self.cur.append(data)


def html_to_markdown(source: str) -> str:
    """Visible text of an HTML page, one paragraph per block, headings as "#"
    lines; the page's <title> heads it when no <h1> does."""
    p = _Text()
    p.feed(source)
    p.close()
    p._flush()
    title = " ".join(html.unescape("".join(p.title)).split())
    if title and not any(line.startswith("# ") for line in p.out):
        p.out.insert(0, "# " + title)
    return "\n\n".join(p.out)
