"""HTTP API Lambda handler (API Gateway HTTP API, payload v2): start, inspect, list, signal, cancel
and trace jobs.

A Powertools ``APIGatewayHttpResolver`` with validation on: request bodies and query parameters are
checked against the pydantic models of ``api_models`` and the OpenAPI document is generated from the
routes. The routes here read jobs; ``api_commands`` (signal, cancel) and ``api_trace`` add theirs as
routers, and ``api_values`` the routes that serve one big value whole (answers are bounded, see
``api_bounds``). Routes only adapt HTTP to runtime calls; errors become answers in one place, the exception
handlers below, always as ``{"error": {"code", "message"}}``:

* 400 ``malformed_json`` (body is not JSON), ``invalid_parameter`` (a query or path parameter is
  wrong, e.g. an unknown ``status``, ``limit`` out of range, a signal name a job cannot wait for),
  ``invalid_cursor``, ``unknown_job_type``, ``trace_too_large``;
* 403 ``no_tenant`` (the caller's verified identity names no tenant, e.g. a JWT without the claim),
  ``callback_*`` (a callback token that does not authorise the answer: see ``api_callbacks``);
* 404 ``job_not_found`` (also for another tenant's job: ids do not leak), ``event_not_found``,
  ``not_found`` (no such path); 405 ``method_not_allowed`` (the path is served for other methods,
  listed in ``Allow``); 409 ``idempotency_conflict``, ``job_finished`` (a signal or cancel for a job
  that has ended), ``signal_id_conflict`` (the signal id was used for a signal with another name or
  payload), ``idempotency_key_busy`` (concurrent starts with the key kept racing: start again),
  ``not_retryable`` (a retry of a job that did not end FAILED/CANCELLED, or whose compensations ran),
  ``invalid_seq`` (a fork's seq is past the end of the job's log as it is now, or at its end);
* 413 ``payload_too_large`` (the body, or the job input once serialized); 415 ``unsupported_media_type``
  (a body that is not ``application/json``, in any capitalisation: form-encoded bodies are refused,
  never read);
* 422 ``validation_error`` (the body does not match the request model), ``invalid_input`` (the job
  function's input type refused ``input``), ``invalid_value`` (a value the runtime cannot store and
  read back: nesting past 64 levels, ``inf``/``nan``/``1e400``, an integer over 640 digits, a lone
  surrogate — the message names where, e.g. ``input.items[3].price``);
* 503 ``callback_keys_unavailable`` (the callback keyring could not be read: retry later);
* 500 ``internal_error`` — a bug, logged with its stack trace, which never reaches the client.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from aetheris import _observability as obs
from aetheris import hosting
from aetheris._fork import InvalidForkPoint, NotRetryable
from aetheris._store.idempotency import KeyContended
from aetheris._store.inbox import SignalIdConflict
from aetheris._store.listing import InvalidCursor, Listing
from aetheris._values import MAX_DEPTH, MAX_INT_DIGITS, UnstorableValue, check_storable
from aetheris.app import App
from aetheris.callbacks import CallbackKeysUnavailable, CallbackRefused
from aetheris.errors import (
    AetherisError,
    IdempotencyConflict,
    JobFinished,
    JobNotFound,
    PayloadTooLarge,
    UnknownJobType,
)
from aetheris.events import JobStatus
from aetheris.handlers import (
    api_callbacks,
    api_commands,
    api_http,
    api_observability,
    api_openapi,
    api_trace,
    api_ui,
    api_values,
)
from aetheris.handlers.api_bounds import EVENT_PAGE_BYTES, shown
from aetheris.handlers.api_commands import InvalidSignalName
from aetheris.handlers.api_http import UnsupportedMediaType
from aetheris.handlers.api_models import (
    Cursor,
    ErrorDetail,
    ErrorResponse,
    EventCursor,
    EventPage,
    EventView,
    JobDetail,
    JobId,
    JobPage,
    JobStarted,
    JobSummary,
    StartJobRequest,
    answers,
)
from aetheris.handlers.api_tenancy import NoTenant, tenant_of_request
from aetheris.handlers.api_trace import TraceTooLarge
from aetheris.handlers.api_values import EventNotFound

API_VERSION = "2.0"
MAX_BODY_BYTES = 256 * 1024

logger = Logger(service="aetheris-api")
# X-Ray on Lambda (its store calls as subsegments: the Tracer patches botocore); off locally.
tracer = Tracer(service="aetheris-api")
metrics = Metrics(namespace="Aetheris", service="api")


class InvalidJobInput(AetherisError):
    """The job's input type refused the request's ``input``."""

    def __init__(self, job_type: str, invalid: ValidationError) -> None:
        self.job_type = job_type
        super().__init__(f"input does not fit job type {job_type!r}: {_describe(invalid.errors())}")


def _load_body(text: str) -> Any:
    """Parse a JSON body, refusing oversized ones before parsing them (used by request validation).

    Only what the runtime can store and read back gets through (``aetheris._values``): a number
    too long for any reader, nesting past the limit, ``1e400`` (read as ``inf``) or a lone
    surrogate is an ``UnstorableValue`` (422 ``invalid_value``) naming where it is.
    """
    size = len(text.encode())
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body", size, MAX_BODY_BYTES)
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
    except RecursionError:  # nesting deep enough to exhaust the parser's stack
        problem = f"nested deeper than {MAX_DEPTH} levels: flatten it, or send the deep part as a string"
        raise UnstorableValue("request body", "body", problem) from None
    _check_body(body)
    return body


def _bounded_int(digits: str) -> int:
    # Python refuses to convert more than 4,300 digits (a ValueError, not a JSON error): refuse first.
    count = len(digits.lstrip("-"))
    if count > MAX_INT_DIGITS:
        problem = (
            f"an integer of {count} digits, over the {MAX_INT_DIGITS} JSON readers take: send it as a string"
        )
        raise UnstorableValue("request body", "body", problem)
    return int(digits)


def _check_body(body: Any) -> None:
    """Each field of the body checked as the runtime will check it: paths read ``input.items[3]``."""
    if not isinstance(body, dict):
        check_storable(body, "body")
        return
    check_storable(list(body), "body")  # the field names themselves
    for name, value in body.items():
        check_storable(value, name)


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


app = APIGatewayHttpResolver(
    enable_validation=True,
    # A response that does not fit its model is our bug: a 500, never a 422 blamed on the client.
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
    json_body_deserializer=_load_body,
)
api_http.strict_bodies(app)


# -- routes ------------------------------------------------------------------------------------

_STARTED: dict[str, Any] = {"application/json": {"model": JobStarted}}


@app.post(
    "/jobs",
    summary="Start a job",
    description="201 with a new job; 200 with the same job when the idempotency key was used before.",
    responses={
        **answers(JobStarted, 400, 409, 413, 415, 422),
        200: {"description": "Started before with this idempotency key: the same job", "content": _STARTED},
        201: {"description": "Started", "content": _STARTED},
    },
)
def start_job(request: Annotated[StartJobRequest, Body()]) -> Response[JobStarted]:
    runtime = hosting.runtime()
    if request.job_type not in runtime.app.job_types:  # the document's enum, checked the same way
        raise UnknownJobType(request.job_type, [])
    try:
        api_openapi.check_input(runtime.app, request.job_type, request.input)  # as the document says
        started = runtime.start(
            request.job_type,
            request.input,
            idempotency_key=request.idempotency_key,
            tenant=tenant_of_request(app.current_event),
            budget=request.budget,
        )
    except ValidationError as invalid:
        raise InvalidJobInput(request.job_type, invalid) from None
    if started.created:  # a repeated idempotency key starts nothing
        metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=1)
        # By type too (bounded: only the app's registered types get this far).
        obs.publish(metrics, [obs.Sample(obs.Metric.JOBS_STARTED_BY_TYPE, 1, request.job_type)], "api")
    return Response(
        status_code=HTTPStatus.CREATED if started.created else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=JobStarted(job_id=started.job_id, status=started.status),
        headers={"Location": f"/jobs/{started.job_id}"},
    )


@app.get(
    "/jobs/<job_id>",
    summary="A job: status, progress, result or error",
    responses=answers(JobDetail, 400, 404),
)
def get_job(job_id: JobId) -> JobDetail:
    return JobDetail.read(hosting.runtime(), job_id, tenant_of_request(app.current_event))


@app.get("/jobs", summary="Jobs, newest status change first", responses=answers(JobPage, 400))
def list_jobs(
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Cursor = None,
) -> JobPage:
    tenant = tenant_of_request(app.current_event)
    page = Listing(hosting.runtime().services.jobs.table).jobs(status, limit, cursor, tenant=tenant)
    return JobPage(jobs=[JobSummary.from_item(item) for item in page.items], next_cursor=page.next_cursor)


@app.get(
    "/jobs/<job_id>/events",
    summary="The job's raw event log, in seq order",
    responses=answers(EventPage, 400, 404),
)
def list_events(
    job_id: JobId,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: EventCursor = None,
) -> EventPage:
    services = hosting.runtime().services
    listing = Listing(services.jobs.table)

    def shown_item(item: dict[str, Any]) -> dict[str, Any]:
        # Only what the page shows is fetched; a big offloaded result becomes a preview unread.
        href = f"/jobs/{job_id}/events/{item['seq']}/result"
        shown_input = shown(services.payloads, item.get("input"), f"/jobs/{job_id}/input", as_text=True)
        return {
            **item,
            "result": shown(services.payloads, item.get("result"), href, as_text=True),
            "input": shown_input,  # JobCreated's
        }

    # Each shown event costs at most SHOWN_VALUE_BYTES in the answer, and the page is cut at half
    # the answer budget as the listing measures it: the answer stays under MAX_ANSWER_BYTES.
    page = listing.events(
        job_id,
        limit,
        cursor,
        max_bytes=EVENT_PAGE_BYTES,
        resolve=shown_item,
        tenant=tenant_of_request(app.current_event),
    )
    if page is None:
        raise JobNotFound(job_id)
    return EventPage(events=[EventView.from_item(item) for item in page.items], next_cursor=page.next_cursor)


app.include_router(api_commands.router)
app.include_router(api_trace.router)
app.include_router(api_observability.router)
app.include_router(api_ui.router)
app.include_router(api_values.router)
app.include_router(api_callbacks.router)


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi() -> Response[str]:
    body = _served_spec(hosting.runtime().app)
    return Response(status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=body)


@cache
def _served_spec(job_app: App) -> str:
    """The document with ``job_app``'s job types and input schemas (see ``api_openapi``)."""
    return json.dumps(api_openapi.document(json.loads(_spec()), job_app))


@cache
def _spec() -> str:
    """The generated document, with Powertools' default error answers replaced by the ones we send."""
    spec = json.loads(app.get_openapi_json_schema(title="Aetheris", version=API_VERSION))
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in spec["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            if "requestBody" not in operation:
                responses.pop("422", None)  # only a body can fail with 422; bad parameters are a 400
            # Any body that is not JSON is refused, on routes that take none as well.
            responses.setdefault("415", {"description": "Unsupported Media Type", "content": error})
            responses.setdefault("403", {"description": "The identity names no tenant", "content": error})
            responses["500"] = {"description": "Internal error: a bug, logged", "content": error}
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        spec["components"]["schemas"].pop(name, None)
    return json.dumps(spec)


# -- errors: the one place where exceptions become answers -----------------------------------

ErrorHandler = TypeVar("ErrorHandler", bound=Callable[[Any], Response[str]])


def _handles(*classes: type[Exception]) -> Callable[[ErrorHandler], ErrorHandler]:
    """Register the decorated function as the answer to ``classes`` (a typed ``app.exception_handler``)."""

    def register(answer: ErrorHandler) -> ErrorHandler:
        app.exception_handler(list(classes))(answer)
        return answer

    return register


def error_response(status: HTTPStatus, code: str, message: str) -> Response[str]:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body.model_dump_json()
    )


def _describe(errors: Any) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        text = error.get("msg") or error.get("type") or "invalid"
        parts.append(f"{where}: {text}" if where else text)
    return "; ".join(parts)


@_handles(RequestValidationError)
def _request_invalid(error: RequestValidationError) -> Response[str]:
    errors = list(error.errors())
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        detail = (malformed.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(
            HTTPStatus.BAD_REQUEST, "malformed_json", f"the body is not valid JSON: {detail}"
        )
    if all(tuple(e.get("loc", ()))[:2] == ("query", "cursor") for e in errors):
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_cursor", _describe(errors))
    if all(e.get("loc", ("body",))[0] in ("query", "path") for e in errors):
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_parameter", _describe(errors))
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", _describe(errors))


@_handles(RequestUnsupportedContentType)
def _unsupported_media_type(error: RequestUnsupportedContentType) -> Response[str]:
    message = f"{_describe(error.errors())}; send the body as application/json"
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)


@_handles(UnsupportedMediaType)
def _unsupported_body(error: UnsupportedMediaType) -> Response[str]:
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", str(error))


@_handles(UnicodeDecodeError, binascii.Error)
def _undecodable_body(_: ValueError) -> Response[str]:
    # Raised while decoding the body: base64 that is not base64, or bytes that are not UTF-8.
    return error_response(HTTPStatus.BAD_REQUEST, "malformed_json", "the body is not UTF-8 encoded JSON")


@_handles(InvalidCursor)
def _invalid_cursor(error: InvalidCursor) -> Response[str]:
    return error_response(HTTPStatus.BAD_REQUEST, "invalid_cursor", str(error))


@_handles(UnknownJobType)
def _unknown_job_type(error: UnknownJobType) -> Response[str]:
    # Not str(error): that lists every registered type, which is not the caller's to see.
    message = f"no job type {error.job_type!r} is registered here; GET /openapi.json lists those it starts"
    return error_response(HTTPStatus.BAD_REQUEST, "unknown_job_type", message)


@_handles(JobNotFound)
def _job_not_found(error: JobNotFound) -> Response[str]:
    message = f"{error}; job ids are the job_id values POST /jobs returned"
    return error_response(HTTPStatus.NOT_FOUND, "job_not_found", message)


@_handles(NotFoundError)
def _no_route(_: Exception) -> Response[str]:
    event = app.current_event
    allowed = api_http.allowed_methods(app, event.path)
    if allowed:
        message = f"{event.http_method} is not served at {event.path}; it takes {', '.join(allowed)}"
        answer = error_response(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", message)
        answer.headers["Allow"] = ", ".join(allowed)
        return answer
    message = f"no route {event.http_method} {event.path}; GET /openapi.json lists the routes"
    return error_response(HTTPStatus.NOT_FOUND, "not_found", message)


@_handles(InvalidSignalName)
def _invalid_signal_name(error: InvalidSignalName) -> Response[str]:
    return error_response(HTTPStatus.BAD_REQUEST, "invalid_parameter", f"path.name: {error}")


@_handles(EventNotFound)
def _event_not_found(error: EventNotFound) -> Response[str]:
    return error_response(HTTPStatus.NOT_FOUND, "event_not_found", str(error))


@_handles(NoTenant)
def _no_tenant(error: NoTenant) -> Response[str]:
    return error_response(HTTPStatus.FORBIDDEN, "no_tenant", f"{error}; ask for a token that carries one")


@_handles(CallbackRefused)
def _callback_refused(error: CallbackRefused) -> Response[str]:
    return error_response(HTTPStatus.FORBIDDEN, error.code, error.message)


@_handles(CallbackKeysUnavailable)
def _callback_keys_unavailable(error: CallbackKeysUnavailable) -> Response[str]:
    logger.error("callback keys unavailable", extra={"reason": str(error)})
    return error_response(
        HTTPStatus.SERVICE_UNAVAILABLE, "callback_keys_unavailable", "callbacks cannot be checked now: retry"
    )


@_handles(TraceTooLarge)
def _trace_too_large(error: TraceTooLarge) -> Response[str]:
    return error_response(HTTPStatus.BAD_REQUEST, "trace_too_large", str(error))


@_handles(JobFinished)
def _job_finished(error: JobFinished) -> Response[str]:
    message = f"{error}: a finished job takes no more signals and cannot be cancelled"
    return error_response(HTTPStatus.CONFLICT, "job_finished", message)


@_handles(IdempotencyConflict)
def _idempotency_conflict(error: IdempotencyConflict) -> Response[str]:
    return error_response(HTTPStatus.CONFLICT, "idempotency_conflict", str(error))


@_handles(PayloadTooLarge)
def _payload_too_large(error: PayloadTooLarge) -> Response[str]:
    return error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", str(error))


@_handles(UnstorableValue)
def _invalid_value(error: UnstorableValue) -> Response[str]:
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_value", str(error))


@_handles(KeyContended)
def _key_contended(error: KeyContended) -> Response[str]:
    return error_response(HTTPStatus.CONFLICT, "idempotency_key_busy", str(error))


@_handles(SignalIdConflict)
def _signal_id_conflict(error: SignalIdConflict) -> Response[str]:
    return error_response(HTTPStatus.CONFLICT, "signal_id_conflict", str(error))


@_handles(InvalidForkPoint)
def _invalid_fork_point(error: InvalidForkPoint) -> Response[str]:
    return error_response(
        HTTPStatus.CONFLICT, "invalid_seq", f"{error}; GET /jobs/{error.job_id}/events lists the seqs"
    )


@_handles(NotRetryable)
def _not_retryable(error: NotRetryable) -> Response[str]:
    return error_response(HTTPStatus.CONFLICT, "not_retryable", str(error))


@_handles(InvalidJobInput)
def _invalid_input(error: InvalidJobInput) -> Response[str]:
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_input", str(error))


@_handles(Exception, ResponseValidationError)
def _internal(error: Exception) -> Response[str]:
    logger.exception("unhandled error in the HTTP API", extra={"error_type": type(error).__name__})
    request_id = getattr(app.lambda_context, "aws_request_id", "unknown")
    message = f"internal error, logged under request id {request_id}; retry later, or report it with that id"
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", message)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    api_http.normalize_content_type(event)
    return app.resolve(event, context)
