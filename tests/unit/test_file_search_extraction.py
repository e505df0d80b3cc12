"""Text extraction by file type, and the errors of files that cannot be indexed."""

from __future__ import annotations

import io

import pytest

from vtai.server.retrieval.extraction import ExtractionError, extract_text


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one page of Helvetica text lines per item."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for text in pages:
        lines = "".join(f"({_escape(line)}) Tj T* " for line in text.splitlines())
        stream = f"BT /F1 11 Tf 14 TL 72 720 Td {lines}ET".encode("latin-1")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode('latin-1')}\n"
                       "endstream")
        kids.append(len(objects) + 1)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       f"<< /Font << /F1 FONT 0 R >> >> /Contents {len(objects)} 0 R >>")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    font = len(objects)
    objects = [o.replace("FONT", str(font)) for o in objects]
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] " \
                 f"/Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return bytes(out)


def test_pdf_pages() -> None:
    text = extract_text("report.PDF", make_pdf(["First page (intro)\nsecond line",
                                                "Second page"]))
    assert "First page (intro)" in text and "second line" in text and "Second page" in text
    assert text.index("First") < text.index("Second page")


def test_corrupt_pdf_is_invalid() -> None:
    data = make_pdf(["Some text"])
    with pytest.raises(ExtractionError) as err:
        extract_text("broken.pdf", data[: len(data) // 3])
    assert err.value.code == "invalid_file"


def test_docx_and_pptx() -> None:
    import docx
    import pptx

    document = docx.Document()
    document.add_paragraph("Quarterly results were strong.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "region", "north"
    buffer = io.BytesIO()
    document.save(buffer)
    text = extract_text("q3.docx", buffer.getvalue())
    assert "Quarterly results were strong." in text and "region\tnorth" in text

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Roadmap"
    slide.notes_slide.notes_text_frame.text = "Speaker notes here"
    buffer = io.BytesIO()
    deck.save(buffer)
    text = extract_text("plan.pptx", buffer.getvalue())
    assert "Roadmap" in text and "Speaker notes here" in text


def test_html_keeps_visible_text_only() -> None:
    html = (b"<html><head><title>Guide</title><style>p{color:red}</style></head><body>"
            b"<h1>Install</h1><p>Run &amp; wait.</p><script>alert(1)</script></body></html>")
    assert extract_text("guide.html", html) == "Guide\nInstall\nRun & wait."


def test_text_types_and_encodings() -> None:
    assert extract_text("main.py", b"def f():\n    return 1\n") == "def f():\n    return 1\n"
    assert extract_text("a.csv", b"name,score\nada,3\n") == "name,score\nada,3\n"
    latin = "Le café au lait coûte trois euros à la gare, déjà très cher. " * 5
    assert extract_text("notes.txt", latin.encode("cp1252")) == latin
    assert extract_text("rows.json", b'{"a": 1}\n{"b": 2}\n').startswith('{"a"')


def test_unsupported_and_invalid_files() -> None:
    with pytest.raises(ExtractionError) as err:
        extract_text("photo.png", b"\x89PNG....")
    assert err.value.code == "unsupported_file" and ".png" in err.value.message
    for name, data in (("data.json", b"{not json"), ("blank.txt", b"  \n "),
                       ("bin.txt", b"\x00\x01\x02\xff\xfe" * 100),
                       ("fake.docx", b"not a zip")):
        with pytest.raises(ExtractionError) as err:
            extract_text(name, data)
        assert err.value.code == "invalid_file", name
