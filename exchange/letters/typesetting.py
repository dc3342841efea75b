"""The PDF engine: typst templates laid out as PDF/A-2b, with one typst compiler kept per process and template folder.

Every PDF casebridge makes (letters, subject access reports, plan summaries) is a `PdfDocument` laid out here: a
template file, the data it prints and the creation time its metadata carries. The data reaches the template only as
JSON in `sys.inputs.data`, which the template decodes and prints as text, so nothing a user typed is ever read as
typst markup or code. Fonts are the ones the typst package ships (Libertinus Serif, New Computer Modern and DejaVu
Sans Mono, all with Cyrillic, under the SIL Open Font License and the Bitstream Vera licence); the system's fonts are
never looked at, so a PDF comes out the same on every node and no system package is needed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import typst

# ISO 19005-2 level B: fonts embedded, colours device-independent, XMP metadata that declares the conformance; it
# needs no structure tree (level A), so layout stays fast, and typst writes a tagged PDF all the same.
PDF_STANDARD: Final = "a-2b"


class LayoutFailed(RuntimeError):
    """A template could not be laid out (a defect in the template, never in the data it was given)."""


@dataclass(frozen=True, slots=True)
class PdfDocument:
    """One PDF to lay out: a typst template, the data it prints, and when it was made (its metadata's dates).

    `template` is a path inside `root`, the folder of templates it belongs to: the template reads nothing outside
    it. `data` must be JSON-serialisable. The same document always lays out to the same bytes: typst is
    deterministic and `created` stands in for the clock.
    """

    root: Path
    template: str
    data: Mapping[str, Any]
    created: dt.datetime


# One compiler per folder of templates, made on first
# use in each process and kept: the compiler holds the parsed fonts and typst's caches, which is what makes every
# layout after the first one fast. A compiler lays out one document at a time; the lock matters only when layouts
# run in threads (a pool of 0 processes), since a worker process runs one layout at a time anyway.
_COMPILERS_LOCK: Final = threading.Lock()
_compilers: dict[Path, tuple[typst.Compiler, threading.Lock]] = {}


def _compiler(root: Path) -> tuple[typst.Compiler, threading.Lock]:
    with _COMPILERS_LOCK:
        found = _compilers.get(root)
        if found is None:
            # Imported on first use, not at start-up: a node without the engine still starts, and says why it
            # cannot lay out (the renderer turns the ImportError into LetterUnavailable).
            import typst

            found = _compilers[root] = (typst.Compiler(root=str(root), ignore_system_fonts=True), threading.Lock())
        return found


def typeset(document: PdfDocument) -> bytes:
    """Lay the document out on the calling thread (in a worker process of the pool, or in a thread for tools)."""
    compiler, lock = _compiler(document.root)
    import typst  # loaded by `_compiler` by now; named here for its error type

    inputs = {"data": json.dumps(document.data, ensure_ascii=False, separators=(",", ":"))}
    try:
        with lock:
            pdf = compiler.compile(
                input=str(document.root / document.template),
                sys_inputs=inputs,
                pdf_standards=[PDF_STANDARD],
                timestamp=int(document.created.timestamp()),
            )
    except typst.TypstError as exc:
        # typst's message names the template's code (an unknown field, a wrong type), not the data: the data is
        # never parsed as typst, so no value of it can appear in a diagnostic. Raised as a plain error, which
        # crosses back from a worker process (typst's own does not survive pickling).
        raise LayoutFailed(f"{document.template}: {exc.message}") from None
    if not isinstance(pdf, bytes):
        raise LayoutFailed(f"{document.template}: typst returned no PDF")
    return pdf
