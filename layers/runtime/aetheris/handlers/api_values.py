"""HTTP API routes that serve one recorded value whole: a job's input or result, an event's result.

They are where a ``ValuePreview``'s ``href`` leads (``GET /jobs/{id}`` and ``/events`` show big
values as previews, see ``api_bounds``). The answer is the value's JSON text itself. A value too big
for a Lambda answer (over ``MAX_ANSWER_BYTES`` once escaped) lives in the payload bucket — without a
bucket no value is over the 256 KiB inline cap — and is answered ``303 See Other`` with a presigned
S3 URL (valid ``PRESIGNED_FOR``) in ``Location``: HTTP clients follow it and read the object straight
from S3, checked against the ``sha256`` in the body. The URL is the credential: it reads that one
object, for a quarter of an hour, and is handed only to a caller this route let through.
"""

from __future__ import annotations

import json
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from aetheris import hosting
from aetheris._store import schema
from aetheris._store.jobs import COMMITTED
from aetheris._store.payloads import PayloadRef
from aetheris._tenancy import owns
from aetheris.errors import AetherisError, JobNotFound
from aetheris.handlers.api_bounds import MAX_ANSWER_BYTES, stored_bytes
from aetheris.handlers.api_models import ErrorResponse, JobId
from aetheris.handlers.api_tenancy import tenant_of_request

PRESIGNED_FOR = timedelta(minutes=15)

# Powertools leaves Router.__init__ unannotated.
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]


class EventNotFound(AetherisError):
    """The job has no committed event at that sequence number."""

    def __init__(self, job_id: str, seq: int) -> None:
        self.job_id, self.seq = job_id, seq
        super().__init__(f"job {job_id} has no event {seq}; GET /jobs/{job_id}/events lists them")


class ValueLocation(BaseModel):
    """Where to read a value too big for an answer (the body of a 303; ``Location`` holds ``url``)."""

    url: str = Field(description="a presigned S3 GET URL for the value's JSON text")
    bytes: int
    sha256: str = Field(description="hex SHA-256 of the object: check what you read against it")
    expires_in_seconds: int


_ERROR = {"application/json": {"model": ErrorResponse}}
_RESPONSES: dict[int, Any] = {
    200: {"description": "The value's JSON text", "content": {"application/json": {"schema": {}}}},
    303: {
        "description": "Too big for an answer: read it from S3 at Location (presigned)",
        "content": {"application/json": {"model": ValueLocation}},
    },
    400: {"description": "Bad Request", "content": _ERROR},
    404: {"description": "Not Found", "content": _ERROR},
}
Seq = Annotated[int, Path(ge=0, le=10**10 - 1, description="the event's seq")]


@router.get("/jobs/<job_id>/result", summary="A job's whole result", responses=_RESPONSES)
def job_result(job_id: JobId) -> Response[str]:
    return _answer(_job_value(job_id, "result"))


@router.get("/jobs/<job_id>/input", summary="A job's whole input", responses=_RESPONSES)
def job_input(job_id: JobId) -> Response[str]:
    return _answer(_job_value(job_id, "input"))


@router.get("/jobs/<job_id>/events/<seq>/result", summary="An event's whole result", responses=_RESPONSES)
def event_result(job_id: JobId, seq: Seq) -> Response[str]:
    table = hosting.runtime().services.jobs.table
    if not owns(table.get(job_id, schema.JOB_SK), tenant_of_request(router.current_event)):
        raise JobNotFound(job_id)  # another tenant's job reads as no job
    item = table.get(job_id, schema.event_sk(seq))
    if item is None or item.get("state") != COMMITTED:
        raise EventNotFound(job_id, seq)
    return _answer(item.get("result"))


def _job_value(job_id: str, name: str) -> str | None:
    item = hosting.runtime().services.jobs.get(job_id)
    if not owns(item, tenant_of_request(router.current_event)):
        raise JobNotFound(job_id)  # another tenant's job reads as no job
    assert item is not None
    stored = hosting.runtime().services.jobs.input_of(item) if name == "input" else item.get(name)
    return None if stored is None else str(stored)


def _answer(stored: str | None) -> Response[str]:
    """The value whole, or a 303 to S3 when its answer would pass ``MAX_ANSWER_BYTES``."""
    ref = PayloadRef.parse(stored) if stored is not None else None
    # Escaping never shrinks a text: a value over the budget in UTF-8 is over it in the answer.
    if ref is None or stored_bytes(stored) <= MAX_ANSWER_BYTES:
        text = hosting.runtime().services.payloads.text(stored) or "null"
        if ref is None or len(json.dumps(text)) <= MAX_ANSWER_BYTES:
            return Response(status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=text)
    # Only a reference gets here: an inline value is at most 256 KiB, 1.5 MiB once escaped.
    assert ref is not None
    payloads = hosting.runtime().services.payloads
    s3 = payloads.s3
    if s3 is None:  # a reference, and no bucket configured here: the clear PayloadCorrupted
        payloads.text(stored)
        raise AssertionError("unreachable: Payloads.text refuses a reference without a bucket")
    seconds = int(PRESIGNED_FOR.total_seconds())
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=seconds
    )
    location = ValueLocation(url=url, bytes=ref.bytes, sha256=ref.sha256, expires_in_seconds=seconds)
    return Response(
        status_code=HTTPStatus.SEE_OTHER,
        content_type=content_types.APPLICATION_JSON,
        body=location.model_dump_json(),
        headers={"Location": url},
    )
