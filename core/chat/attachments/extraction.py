"""Reading an attached document's text: plain text and source code, Markdown, PDF (pypdf), Word .docx
(python-docx) and HTML (the standard library's html.parser).

Each file is checked against what its name says before it is parsed: a PDF must start like one, a .docx must be a
zip archive, a text file must not hold binary bytes. A file that cannot be read as the document it claims to be,
a PDF with no text layer (a scan), an encrypted PDF or a file over MAX_DOCUMENT_BYTES raises DocumentRefused
with one sentence for the user. Slow for big PDFs (about a second for 300 pages): call it off the UI thread.
"""
from __future__ import annotations

import io
import logging
import zipfile
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_DOCUMENT_BYTES = 64 * MiB
SNIFF_BYTES = 8192

TEXT_SUFFIXES = frozenset("""
.txt .text .md .markdown .rst .org .adoc .tex .csv .tsv .log .json .jsonl .yaml .yml .toml .ini .cfg .conf .env
.xml .svg .srt .vtt .py .pyi .ipynb .js .mjs .cjs .jsx .ts .tsx .c .h .cc .cpp .cxx .hpp .hh .cs .java .kt .kts
.go .rs .rb .php .pl .pm .lua .r .jl .scala .swift .m .mm .sh .bash .zsh .fish .ps1 .bat .cmd .sql .css .scss
.sass .less .vue .svelte .dart .ex .exs .erl .hs .ml .clj .el .vim .cmake .make .mk .gradle .dockerfile .proto
.graphql .tf .nix .zig .f90 .asm .s .diff .patch
""".split())
SPECIAL_TEXT_NAMES = frozenset({"makefile", "dockerfile", "readme", "license", "cmakelists.txt"})
PDF_SUFFIXES = frozenset({".pdf"})
WORD_SUFFIXES = frozenset({".docx"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


class DocumentRefused(Exception):
    """The file cannot be attached as a document; str() is one sentence saying why and what to do."""


@dataclass(frozen=True)
class Page:
    number: int | None        # 1-based page of a PDF; None where the format has no pages
    text: str


@dataclass(frozen=True)
class ExtractedDocument:
    name: str
    format: str               # "text" | "pdf" | "docx" | "html"
    size_bytes: int
    pages: tuple[Page, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages if page.text)


def document_format(path: Path) -> str | None:
    """The document format a file's name says it is, or None when it is not a document LlamaDesk reads."""
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return "pdf"
    if suffix in WORD_SUFFIXES:
        return "docx"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in TEXT_SUFFIXES or path.name.lower() in SPECIAL_TEXT_NAMES:
        return "text"
    return None


def extract(path: Path | str) -> ExtractedDocument:
    """The document's text, page by page where it has pages. Raises DocumentRefused."""
    path = Path(path)
    kind = document_format(path)
    if kind is None:
        raise DocumentRefused(f"{path.name} is not a document LlamaDesk can read: attach text, Markdown, source "
                              "code, PDF, Word (.docx) or HTML files.")
    data = _read(path)
    pages = _READERS[kind](path.name, data)
    if not any(page.text.strip() for page in pages):
        if kind == "pdf":
            raise DocumentRefused(f"{path.name} has no text to read: it looks like a scanned PDF (pictures of "
                                  "pages). Run it through text recognition (OCR) first, or attach the pages as images "
                                  "for a vision model.")
        raise DocumentRefused(f"{path.name} holds no text.")
    return ExtractedDocument(path.name, kind, len(data), tuple(pages))


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise DocumentRefused(f"{path.name} is {size / MiB:.0f} MB; a document can be at most "
                                  f"{MAX_DOCUMENT_BYTES // MiB} MB. Attach the part you need.")
        return path.read_bytes()
    except OSError as error:
        raise DocumentRefused(f"Could not read {path.name}: {error.strerror or error}.") from error


# --------------------------------------------------------------------------------------------
# plain text


def _text_pages(name: str, data: bytes) -> list[Page]:
    return [Page(None, decode_text(name, data))]


def decode_text(name: str, data: bytes) -> str:
    """Text from bytes: UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252; binary is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    head = data[:SNIFF_BYTES]
    if b"\x00" in head or _control_share(head) > 0.1:
        raise DocumentRefused(f"{name} is not text: it holds binary data (is it a program or an archive that was "
                              "renamed?).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _control_share(head: bytes) -> float:
    if not head:
        return 0.0
    controls = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13, 27))
    return controls / len(head)


# --------------------------------------------------------------------------------------------
# PDF


def _pdf_pages(name: str, data: bytes) -> list[Page]:
    if b"%PDF-" not in data[:1024]:
        raise DocumentRefused(f"{name} is not a PDF, whatever its name says (it does not start like one).")
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentRefused(f"{name} is protected by a password. Open it, save a copy without the password, "
                                  "and attach that.")
        return [Page(number, _page_text(page)) for number, page in enumerate(reader.pages, start=1)]
    except DocumentRefused:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            NotImplementedError, zlib.error) as error:
        if "crypt" in f"{type(error).__name__} {error}".lower():
            raise DocumentRefused(f"{name} is encrypted in a way LlamaDesk cannot open. Save a copy without "
                                  "protection and attach that.") from error
        raise DocumentRefused(f"{name} is a damaged PDF that could not be read ({error}).") from error


def _page_text(page) -> str:
    try:
        return (page.extract_text() or "").strip()
    except Exception as error:       # one unreadable page must not lose the others: pypdf raises many kinds
        log.warning("a PDF page could not be read: %s", error)
        return ""


# --------------------------------------------------------------------------------------------
# Word


def _word_pages(name: str, data: bytes) -> list[Page]:
    if not data.startswith(b"PK\x03\x04"):
        raise DocumentRefused(f"{name} is not a Word document, whatever its name says (a .docx file is a zip "
                              "archive; an old .doc file must be saved as .docx first).")
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise DocumentRefused(f"{name} is not a readable Word document ({error}).") from error
    except Exception as error:       # python-docx raises its own PackageNotFoundError and lxml's errors
        raise DocumentRefused(f"{name} is not a readable Word document ({error}).") from error
    paragraphs = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            paragraphs.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [Page(None, "\n".join(line for line in paragraphs if line.strip()))]


# --------------------------------------------------------------------------------------------
# HTML

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
                         "section", "article", "header", "footer", "table", "ul", "ol", "dt", "dd", "hr", "title"})


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(self._skipping - 1, 0)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def _html_pages(name: str, data: bytes) -> list[Page]:
    parser = _TextOfHtml()
    parser.feed(decode_text(name, data))
    parser.close()
    return [Page(None, parser.text())]


_READERS = {"text": _text_pages, "pdf": _pdf_pages, "docx": _word_pages, "html": _html_pages}
