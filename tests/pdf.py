"""Reading casebridge's PDFs in tests: their text (pypdf), the PDF/A part they declare, and the fonts they use."""

from __future__ import annotations

import io
from collections.abc import Iterator

from pypdf import PdfReader
from pypdf.generic import DictionaryObject

_PDFA_ID = "http://www.aiim.org/pdfa/ns/id/"


def pdf_text(pdf: bytes) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return text.replace("\xa0", " ")  # the templates keep a number and its sign together


def pdfa_conformance(pdf: bytes) -> tuple[str, str] | None:
    """`pdfaid:part` and `pdfaid:conformance` of the document's XMP metadata (ISO 19005-2 §6.6.4), if declared."""
    metadata = PdfReader(io.BytesIO(pdf)).xmp_metadata
    if metadata is None:
        return None
    values = {node.localName: node.firstChild.data for node in metadata.get_nodes_in_namespace("", _PDFA_ID)}
    return values.get("part", ""), values.get("conformance", "")


def fonts(pdf: bytes) -> dict[str, bool]:
    """Every font the pages use, by name, and whether its program is embedded in the file."""
    found: dict[str, bool] = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for font in _page_fonts(page["/Resources"]):
            descriptor = font
            if "/DescendantFonts" in font:
                descriptor = font["/DescendantFonts"][0].get_object()
            descriptor = descriptor["/FontDescriptor"].get_object()
            embedded = any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))
            found[str(font["/BaseFont"])] = embedded
    return found


def _page_fonts(resources: DictionaryObject) -> Iterator[DictionaryObject]:
    for font in resources.get("/Font", {}).values():
        yield font.get_object()
