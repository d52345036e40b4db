"""HTTP API routes ``POST /callbacks/succeed`` and ``POST /callbacks/fail``: answer a callback wait
with its scoped token as the only credential (``template.yaml`` gives these two routes no
authorizer; the token is checked here, see ``aetheris._callback_answers``).

The token travels in ``Authorization: Callback <token>`` — or, for a webhook sender that cannot set
headers, ``?token=`` (a query string may reach access logs: prefer the header). The callback acts
as the tenant its token names, never as a caller's identity. A 202 means the answer is on the
signal queue and in the inbox: it reaches the wait exactly once. Refusals are 403 with their own
code and write nothing.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from aetheris import _callback_answers, hosting
from aetheris.callbacks import MAX_TOKEN_CHARS, CallbackRefused, answer_envelope
from aetheris.handlers.api_models import answers

# Powertools leaves Router.__init__ unannotated.
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

_SCHEME = "callback"
TokenQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_TOKEN_CHARS,
        pattern=r"^[!-~]+$",
        description="the callback token, for senders that cannot set Authorization (prefer the header)",
    ),
]


class CallbackError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        default="failed",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="machine-readable: what the job's CallbackFailed.code reads",
    )
    message: str = Field(default="", max_length=4096, description="for humans: why")


class CallbackFailure(BaseModel):
    """Body of ``POST /callbacks/fail``: the error the job's wait raises (``CallbackFailed``)."""

    model_config = ConfigDict(extra="forbid")

    error: CallbackError


class CallbackAccepted(BaseModel):
    job_id: str = Field(description="the job whose wait this answers")
    signal_id: str = Field(description="the answer's signal id: one per wait, so a resend is the same answer")


_RESPONSES = answers(CallbackAccepted, 400, 403, 413, 415, 422, status=HTTPStatus.ACCEPTED)
_RESPONSES[403]["description"] = (
    "The token does not authorise this answer (code callback_malformed, callback_invalid, callback_expired, "
    "callback_wrong_job, callback_wrong_wait, callback_closed or callback_used); nothing was written"
)


def _token(query: str | None) -> str:
    headers = router.current_event.headers or {}
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() == _SCHEME and presented.strip():
        return presented.strip()
    if query:
        return query
    raise CallbackRefused("callback_malformed", "no token: send Authorization: Callback <token>")


def _accepted(token: str, envelope: dict[str, Any]) -> Response[CallbackAccepted]:
    grant, signal_id = _callback_answers.answer(hosting.runtime(), token, envelope)
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=CallbackAccepted(job_id=grant.j, signal_id=signal_id),
    )


@router.post(
    "/callbacks/succeed",
    summary="Answer a callback with a payload",
    description=(
        "The body (a JSON object, or none) is what the job's `Callback.wait()` returns. Authorised by "
        "the callback token alone (`Authorization: Callback <token>`). 202 once the answer is on its "
        "way; the same answer sent again gets the same 202, another one 403 `callback_used`."
    ),
    responses=_RESPONSES,
)
def succeed(
    payload: Annotated[dict[str, Any] | None, Body(description="what Callback.wait() returns")] = None,
    token: TokenQuery = None,
) -> Response[CallbackAccepted]:
    return _accepted(_token(token), answer_envelope(payload=payload))


@router.post(
    "/callbacks/fail",
    summary="Answer a callback with a failure",
    description=(
        "The job's `Callback.wait()` raises `CallbackFailed(code, message)`. Authorised by the callback "
        "token alone, as for `/callbacks/succeed`; one answer per callback, success or failure."
    ),
    responses=_RESPONSES,
)
def fail(failure: Annotated[CallbackFailure, Body()], token: TokenQuery = None) -> Response[CallbackAccepted]:
    return _accepted(_token(token), answer_envelope(error=failure.error.model_dump()))
