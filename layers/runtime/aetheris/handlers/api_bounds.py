"""How big an API answer may be, and what a value too big to show in one becomes: a preview.

A Lambda may return at most 6 MB, counted on the response document it serializes — the body is a
JSON string inside it, so every ``"`` and ``\\`` of the body is escaped once more, and the body
itself was written by Powertools with ``ensure_ascii`` (a non-ASCII character is 6 bytes, a
character outside the BMP 12). ``answer_bytes`` measures exactly that worst case, and every answer
that carries recorded values stays under ``MAX_ANSWER_BYTES``.

A value is shown whole when its stored JSON is at most ``SHOWN_VALUE_BYTES``; past that it is a
``ValuePreview`` (``{"truncated": true, "bytes", "preview", "href"}``, the shape the trace already
uses, plus where to fetch it whole). A value offloaded to S3 is previewed from a ranged read of its
first bytes, so a 60 MB result is never downloaded to answer ``GET /jobs/{id}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from aetheris._store.payloads import PayloadRef

if TYPE_CHECKING:
    from aetheris._store.payloads import Payloads

# Under the 6 MB Lambda limit, with room for the status line, headers and the envelope.
MAX_ANSWER_BYTES = 5 * 1024 * 1024
SHOWN_VALUE_BYTES = 2 * 1024 * 1024
# A page of events is measured by the listing on its items' JSON (escaped once); the answer escapes
# it once more, which at most doubles it: half the answer budget keeps a page under it.
EVENT_PAGE_BYTES = MAX_ANSWER_BYTES // 2
PREVIEW_CHARS = 200


class ValuePreview(BaseModel):
    """A value too big for this answer: its size, its first characters, and where to fetch it whole."""

    truncated: Literal[True] = True
    bytes: int = Field(description="size of the value's JSON text in UTF-8 bytes")
    preview: str = Field(description="the first characters of its JSON text")
    href: str = Field(description="GET this for the whole value (a 303 to S3 when it is too big to answer)")


def answer_bytes(document: Any) -> int:
    """What ``document`` costs in a Lambda answer: Powertools' JSON of it, escaped once more."""
    return len(json.dumps(json.dumps(document, separators=(",", ":"), default=str)))


def stored_bytes(stored: str | None) -> int:
    """The size of the JSON text a stored attribute stands for (without fetching a reference)."""
    if stored is None:
        return 0
    ref = PayloadRef.parse(stored)
    return ref.bytes if ref is not None else len(stored.encode())


def preview(payloads: Payloads, stored: str, href: str) -> ValuePreview:
    """The preview of a stored value: a ranged read of its first bytes when it lives in S3."""
    ref = PayloadRef.parse(stored)
    if ref is None or payloads.s3 is None:
        head = stored
    else:
        # Enough bytes for PREVIEW_CHARS characters of up to 4 bytes; a cut character is dropped.
        body = payloads.s3.get_object(Bucket=ref.bucket, Key=ref.key, Range=f"bytes=0-{PREVIEW_CHARS * 4}")
        head = body["Body"].read().decode("utf-8", errors="ignore")
    return ValuePreview(bytes=stored_bytes(stored), preview=head[:PREVIEW_CHARS], href=href)


def shown(
    payloads: Payloads, stored: str | None, href: str, *, as_text: bool = False
) -> str | ValuePreview | None:
    """The JSON text of a stored value if it may be shown whole, else its preview.

    ``as_text``: the answer carries the JSON text as a string (an event's ``result``), so its cost
    there — escaped twice — must be at most ``SHOWN_VALUE_BYTES`` too.
    """
    if stored is None:
        return None
    if stored_bytes(stored) > SHOWN_VALUE_BYTES:
        return preview(payloads, stored, href)
    text = payloads.text(stored)
    if as_text and text is not None and answer_bytes(text) > SHOWN_VALUE_BYTES:
        return preview(payloads, stored, href)
    return text
