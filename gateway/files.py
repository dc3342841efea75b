"""How a stored file (a document, a letter's PDF) leaves casebridge: under its own name, never cached, never sniffed
as anything but the type it was checked to be."""

from __future__ import annotations

from urllib.parse import quote

from litestar import Response


def attachment(content: bytes, media_type: str, name: str) -> Response[bytes]:
    """A file to save under `name` (RFC 6266 `filename*`, so any name survives), kept out of every cache."""
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
