"""A folder of test documents: Markdown, text, a PDF written here byte by byte, and HTML. Each
holds one fact no other document has, so a question about it has one right source."""

from __future__ import annotations

from pathlib import Path

HANDBOOK = """# Acme handbook

Welcome to the Acme handbook for staff and customers.

## Returns

A customer may return a kettle within 45 days of delivery, with the receipt, for a full refund.

## Shipping

Orders ship from the Osaka warehouse every weekday at noon.
"""

NOTES = """Support hours

The support line answers from eight in the morning to six in the evening, Monday to Saturday.
"""

PAGE = """<html><head><title>Warranty</title><style>p { color: red }</style></head>
<body><h1>Warranty</h1><p>Every toaster carries a warranty of seven years against defects.</p>
<script>var hidden = "never indexed";</script></body></html>
"""

PDF_TEXT = "The flagship blender is called Typhoon and spins at 30000 revolutions per minute."


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF that shows `text` in Helvetica (a valid file, cross-reference table included)."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_documents(folder: Path) -> Path:
    """The four documents in `folder/docs` (the PDF in a subfolder); returns that folder."""
    docs = folder / "docs"
    (docs / "sheets").mkdir(parents=True)
    (docs / "handbook.md").write_text(HANDBOOK, encoding="utf-8")
    (docs / "support.txt").write_text(NOTES, encoding="utf-8")
    (docs / "warranty.html").write_text(PAGE, encoding="utf-8")
    (docs / "sheets" / "blender.pdf").write_bytes(minimal_pdf(PDF_TEXT))
    return docs
