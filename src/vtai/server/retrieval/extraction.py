"""Text from the bytes of an uploaded file, by its type (told by its name's extension).

PDF pages go through PDFium (pypdfium2: fast, and robust to damaged files); Word and
PowerPoint files through python-docx and python-pptx; HTML through the standard library's
parser; everything else supported is text (markdown, JSON, CSV, source code).
"""

from __future__ import annotations

import io
import json
import threading
from html.parser import HTMLParser
from pathlib import PurePosixPath


class ExtractionError(Exception):
    """A file that cannot be indexed; ``code`` is the vector store file's last_error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unsupported(extension: str) -> ExtractionError:
    shown = extension or "(none)"
    return ExtractionError("unsupported_file",
                           f"Files with extension {shown} are not supported for file search.")


# OpenAI's list for file_search, plus a few common text formats.
TEXT_EXTENSIONS = frozenset({
    ".txt", ".md", ".markdown", ".json", ".jsonl", ".csv", ".tsv", ".tex", ".rst", ".xml",
    ".yaml", ".yml", ".toml", ".ini", ".log",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".css", ".go", ".java", ".js", ".mjs", ".ts",
    ".tsx", ".jsx", ".php", ".py", ".rb", ".rs", ".sh", ".sql", ".swift", ".kt", ".scala",
    ".pl", ".r", ".lua",
})
HTML_EXTENSIONS = frozenset({".html", ".htm"})
SUPPORTED = TEXT_EXTENSIONS | HTML_EXTENSIONS | {".pdf", ".docx", ".pptx"}

# PDFium is not thread-safe: one document at a time in a process.
_pdfium_lock = threading.Lock()


def extension(filename: str) -> str:
    return PurePosixPath(filename.lower()).suffix


def extract_text(filename: str, data: bytes) -> str:
    """The file's text; raises ExtractionError for a type that is not supported or a file
    that cannot be read as its type says."""
    ext = extension(filename)
    if ext not in SUPPORTED:
        raise unsupported(ext)
    if ext == ".pdf":
        text = _pdf(data)
    elif ext == ".docx":
        text = _docx(data)
    elif ext == ".pptx":
        text = _pptx(data)
    elif ext in HTML_EXTENSIONS:
        text = _html(_decode(data))
    elif ext == ".json":
        text = _json(_decode(data))
    else:
        text = _decode(data)
    if not text.strip():
        raise ExtractionError("invalid_file", "The file contains no text to search.")
    return text


def _decode(data: bytes) -> str:
    """UTF-8 (or UTF-16 with its byte order mark); else Windows-1252, the legacy encoding of
    most Western text, which guessing from a few bytes gets wrong more often than right."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:8192]:  # not text whatever its name says
        raise ExtractionError("invalid_file", "The file is not a text file.")
    return data.decode("cp1252", errors="replace")


def _json(text: str) -> str:
    try:
        json.loads(text)
    except ValueError:
        if not all(_json_line(line) for line in text.splitlines() if line.strip()):
            raise ExtractionError("invalid_file", "The file is not valid JSON.") from None
    return text


def _json_line(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _pdf(data: bytes) -> str:
    import pypdfium2 as pdfium

    with _pdfium_lock:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as err:
            raise ExtractionError("invalid_file", f"The PDF cannot be read: {err}.") from err
        try:
            pages = []
            for page in document:
                textpage = page.get_textpage()
                pages.append(textpage.get_text_bounded())
                textpage.close()
                page.close()
        except pdfium.PdfiumError as err:
            raise ExtractionError("invalid_file", f"The PDF cannot be read: {err}.") from err
        finally:
            document.close()
    # PDFium ends lines with CRLF; a form feed between pages keeps them apart.
    return "\f".join(p.replace("\r\n", "\n") for p in pages)


def _docx(data: bytes) -> str:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        parts = [p.text for p in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                parts.append("\t".join(cell.text for cell in row.cells))
    except Exception as err:  # a damaged file fails in the zip, XML or document layer
        raise ExtractionError("invalid_file", "The Word document cannot be read.") from err
    return "\n".join(parts)


def _pptx(data: bytes) -> str:
    import pptx

    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        slides = []
        for slide in presentation.slides:
            parts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                parts.append(slide.notes_slide.notes_text_frame.text)
            slides.append("\n".join(p for p in parts if p))
    except Exception as err:  # a damaged file fails in the zip, XML or document layer
        raise ExtractionError("invalid_file", "The presentation cannot be read.") from err
    return "\n\n".join(slides)


class _HTMLText(HTMLParser):
    """Visible text, with line breaks where blocks end."""

    SKIP = frozenset({"script", "style", "noscript", "template"})
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "section", "article", "pre", "blockquote", "table", "ul", "ol", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _html(text: str) -> str:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
