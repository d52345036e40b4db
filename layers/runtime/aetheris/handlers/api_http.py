"""HTTP-level strictness of the API: methods, media types, and the patterns its parameters follow.

Powertools routes by method and path and parses bodies by ``Content-Type`` prefix, case-sensitively,
and reads a form-encoded body as if it were the JSON one. These helpers make the answers what a
client of an HTTP API expects, and make the OpenAPI document as strict as the server:

* a path served for other methods answers **405** with ``Allow`` (``method_not_allowed``), not 404;
* media types compare case-insensitively (``Application/JSON; Charset=UTF-8`` is JSON); a body in
  any other media type — form-encoded and multipart included — is refused with **415**, never read;
* the patterns below are used both by the route parameters (the server's check) and, through them,
  by the generated document, so a request that fits the document is never refused as malformed.

Rejected: rewriting a non-JSON ``Content-Type`` before routing (an answer would then describe a
header the client never sent) and a catch-all route for 405 (it would show in the document).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from email.message import Message
from typing import Any, Final

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from aetheris.errors import AetherisError

# A job id as the runtime makes them (UUIDs), or any id of letters, digits and - _ . that does not
# start with a dot: one path segment that no client or proxy rewrites (".", "..").
JOB_ID_PATTERN: Final = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$"
# A signal name a job can wait for (aetheris._engine.step_context.check_name) that fits in one path
# segment: no "/" and no leading dot.
SIGNAL_NAME_PATTERN: Final = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}$"
# A client's signal id: printable ASCII, so it reads the same in logs, traces and URLs.
SIGNAL_ID_PATTERN: Final = r"^[!-~]{1,128}$"

JSON_MEDIA_TYPE: Final = "application/json"
_JSON_CHARSETS: Final = frozenset({"", "utf-8", "utf8"})


class UnsupportedMediaType(AetherisError):
    """The request has a body in a media type other than JSON."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        super().__init__(
            f"a body of type {content_type!r} is not read; send JSON, with Content-Type: application/json"
        )


def media_type(content_type: str) -> tuple[str, str]:
    """``(type/subtype, charset)`` of a ``Content-Type`` value, both lower-cased ('' if absent)."""
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    return message.get_content_type().lower(), (charset if isinstance(charset, str) else "").lower()


def normalize_content_type(event: dict[str, Any]) -> None:
    """Write a JSON ``Content-Type`` in its canonical spelling, so that any capitalisation of it is read
    as JSON; any other value is left as sent (and refused by ``check_media_type``)."""
    headers = event.get("headers") or {}
    sent = headers.get("content-type")
    if sent is not None and is_json(sent):
        headers["content-type"] = JSON_MEDIA_TYPE


def is_json(content_type: str) -> bool:
    kind, charset = media_type(content_type)
    return kind == JSON_MEDIA_TYPE and charset in _JSON_CHARSETS


def check_media_type(headers: dict[str, str], body: str | None) -> None:
    """Raise ``UnsupportedMediaType`` for a non-empty body that is not declared JSON (no
    ``Content-Type`` at all is read as JSON, as API Gateway's own console sends it)."""
    content_type = _header(headers, "content-type")
    if body and content_type is not None and content_type.strip() and not is_json(content_type):
        raise UnsupportedMediaType(content_type)


def media_type_middleware(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Any:
    """A Powertools middleware: refuse a non-JSON body sent to a route that takes no body."""
    event = app.current_event
    check_media_type(dict(event.headers or {}), event.body)
    return next_middleware(app)


class JsonBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, reading a body as JSON only.

    Powertools would parse a form-encoded or multipart body into fields and validate those (and fail
    with a 500 on a multipart body without its boundary); a body here is JSON or refused with 415.
    It would also read a JSON array as its first element (form fields repeat; JSON bodies do not):
    every body of this API is an object, so an array is refused as one.
    """

    def _get_body(self, app: Any) -> dict[str, Any]:
        event = app.current_event
        check_media_type(dict(event.headers or {}), event.body)
        body = self._parse_json_data(app)
        if isinstance(body, list):
            error = {"type": "model_type", "loc": ("body",), "msg": "the body must be a JSON object"}
            raise RequestValidationError([{**error, "input": {}, "ctx": {}}])
        return body


def strict_bodies(app: APIGatewayHttpResolver) -> None:
    """Make ``app`` (built with ``enable_validation=True``) read bodies as JSON only, and refuse others."""
    # Powertools puts this middleware first on every validated route; there is no public hook
    # before it. tests/functional/test_api_http.py pins the behaviour (415 for form and multipart).
    app._request_validation_middleware = JsonBodyValidation()  # type: ignore[no-untyped-call]
    app.use([media_type_middleware])


def allowed_methods(app: APIGatewayHttpResolver, path: str) -> list[str]:
    """The methods the routes of ``app`` serve at ``path`` (empty when no route has that path)."""
    # Powertools keeps its routes in these two lists and matches them the same way in _resolve.
    routes: Iterable[Any] = [*app._static_routes, *app._dynamic_routes]
    return sorted({route.method for route in routes if route.rule.match(path)})


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)
