"""In-process moto without the HTTP layer: a boto3 client's DynamoDB and SQS calls go to moto's own
request handlers directly — the same request body, the same answers, a fraction of the CPU.

Under ``mock_aws`` a boto3 call is serialized and signed by botocore, wrapped in an HTTP request
object, routed by moto through ``responses``'s URL registry into a werkzeug-style request, parsed
by moto's parser, handled, serialized to JSON by moto's response serializer (which looks up every
member of every ``AttributeValue`` of every item), and parsed back by botocore. Here a
``before-call`` hook (where botocore's own ``Stubber`` answers) takes the body botocore serialized
(its parameter validation has run), has moto's parser read it with moto's service model, and runs
moto's handler for the action (``DynamoHandler.update_item`` …, which calls the backend models:
every condition, transaction, key condition, filter, visibility timeout and receive count is
moto's code). A successful result that is a plain ``dict`` tree (DynamoDB's are) is converted
by ``answer_as_parsed`` to what botocore would have parsed from moto's JSON; any other result,
and every error, is serialized by moto and parsed by the client's own botocore parser — modeled
error fields (``CancellationReasons``, the ``Item`` of a failed condition) included — so callers
get the dict, or the ``ClientError`` subclass with its ``Error.Code``/``Message``, that the wire
path gives (``tests/infra/test_moto_differential.py`` compares both, call by call).

Skipped: signing, the HTTP request objects, ``responses`` dispatch, moto's URL routing and
botocore's retry loop. The wire path retries throttles, 5xx answers and CRC32 mismatches; moto's
DynamoDB and SQS handlers answer with none of them here, so that loop never runs on moto — it
is the one difference, and a test that simulates such answers hooks a wire-level event (below).
A converted answer's ``ResponseMetadata.HTTPHeaders`` describe an empty body (no content length
or CRC32 of the JSON that was never written).

The wire path is taken instead, call by call, whenever the direct one could differ from it:
- a handler was registered on one of the client's wire-level events (``before-send``,
  ``needs-retry``, ``request-created``, ``before-sign``, ``before-parse``, ``response-received``)
  after ``attach`` — tests that lose answers or inject faults there keep working unchanged;
- moto's IAM authorization is switched on (``INITIAL_NO_AUTH_ACTION_COUNT``), which reads the
  signed request;
- ``mock_aws`` is not active, or the service is not DynamoDB or SQS.
Events before ``before-call`` (``provide-client-params``, ``before-parameter-build``) and
``after-call`` are emitted by botocore as always, so meters and hooks on them count every call.

``AETHERIS_MOTO_DIRECT=0`` (or ``LocalRuntime(direct=False)``) keeps every call on the wire path.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, cast
from urllib.parse import urlparse

from botocore.awsrequest import AWSResponse
from botocore.endpoint import convert_to_response_dict
from moto import settings as moto_settings
from moto.core import config as moto_config
from moto.core.models import botocore_stubber
from moto.core.parse import PROTOCOL_PARSERS
from moto.core.request import determine_request_protocol
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import get_service_model, utcnow
from moto.dynamodb.responses import DynamoResult
from moto.iam.models import mark_account_as_visited
from moto.utilities.utils import get_partition
from requests.structures import CaseInsensitiveDict
from werkzeug.datastructures import MultiDict
from werkzeug.http import http_date

_UNIQUE_ID = "aetheris-moto-direct"
# Events botocore emits only on the HTTP path: a handler there means the caller wants that path.
_WIRE_EVENTS = (
    "request-created",
    "before-sign",
    "before-send",
    "needs-retry",
    "before-parse",
    "response-received",
)
_lock = threading.Lock()
_handler_types: dict[str, type] = {}


def enabled() -> bool:
    """``AETHERIS_MOTO_DIRECT`` unset or anything but ``0``/``false``/``no``/``off``."""
    return os.environ.get("AETHERIS_MOTO_DIRECT", "1").strip().lower() not in ("0", "false", "no", "off")


def attach(client: Any, *, lock: Callable[[], AbstractContextManager[Any]] | None = None) -> Any:
    """Answer ``client``'s DynamoDB or SQS calls from moto's handlers in-process (see the module
    docstring); any other client is returned untouched. Returns ``client``.

    With ``lock``, the backends are those of a moto server running in this process
    (``SerialMotoServer.serve_in_process``), not ``mock_aws``'s: calls are answered directly whether
    or not ``mock_aws`` is active, each one holding ``lock()`` — the server's one-request lock —
    while moto handles it."""
    service = client.meta.service_model.service_id.hyphenize()
    handler_type = _handler_type(service)
    if handler_type is None:
        return client
    direct = _Direct(client, service, handler_type, lock)
    client.meta.events.register(f"before-call.{service}", direct, unique_id=f"{_UNIQUE_ID}-{service}")
    return client


def _handler_type(service: str) -> type | None:
    with _lock:
        if not _handler_types:
            from moto.dynamodb.responses import DynamoHandler
            from moto.sqs.responses import SQSResponse

            _handler_types.update(dynamodb=_unserialized(DynamoHandler), sqs=_unserialized(SQSResponse))
    return _handler_types.get(service)


def _unserialized(handler_type: type[Any]) -> type[Any]:
    """``handler_type`` whose successful results are kept as botocore would parse them, when
    ``answer_as_parsed`` can convert them; any other result is serialized by moto as before."""

    def serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result
        if type(action_result) in _PLAIN_RESULTS and not isinstance(result, Exception):
            operation = self._aetheris_operation
            try:
                self._aetheris_parsed = answer_as_parsed(result, operation.output_shape)
            except _Unconvertible:
                pass
            else:
                status = operation.http.get("responseCode", 200)
                headers = {"Content-Type": self._aetheris_content_type}
                headers.update(self.response_headers)
                return status, headers, ""
        return handler_type.serialized(self, action_result)

    return type(f"Direct{handler_type.__name__}", (handler_type,), {"serialized": serialized})


class _Unconvertible(Exception):
    """A result ``answer_as_parsed`` does not convert: moto's serializer and botocore's parser do."""


def answer_as_parsed(result: Any, shape: Any) -> dict[str, Any]:
    """What botocore's JSON parser makes of moto's JSON serialization of ``result`` (a plain
    ``dict`` tree, as DynamoDB's handlers return) — without writing or reading JSON.

    moto's serializer walks the output shape: a structure takes each member's value by its name
    (or an alias, for objects: refused here unless every key is a member's name) and skips
    ``None``; integers go through ``int``, doubles through ``float``, blobs through base64 (which
    botocore decodes back: ``bytes`` stay, ``str`` become their UTF-8 bytes); strings are ``str``.
    Anything else — timestamps, documents, enums, objects, ``None`` inside a list or map, a
    non-string where a string belongs — raises ``_Unconvertible`` and takes the serialized path."""
    if result is None:
        return {}
    if shape is None:
        raise _Unconvertible
    converted = _convert(result, shape)
    if not isinstance(converted, dict):
        raise _Unconvertible
    return converted


def _convert(value: Any, shape: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if type(value) is not dict or shape.is_document_type:
            raise _Unconvertible
        members = shape.members
        out: dict[str, Any] = {}
        for key, item in value.items():
            member = members.get(key)
            if member is None:
                raise _Unconvertible  # moto's picker might alias it: let moto serialize
            if item is not None:
                out[key] = _convert(item, member)
        return out
    if value is None:
        raise _Unconvertible
    kind_of_value = type(value)
    if kind == "string":
        if kind_of_value is not str:
            raise _Unconvertible
        return value
    if kind == "list":
        if kind_of_value is not list:
            raise _Unconvertible
        member = shape.member
        return [_convert(item, member) for item in value]
    if kind == "map":
        if kind_of_value is not dict:
            raise _Unconvertible
        value_shape = shape.value
        return {_map_key(key): _convert(item, value_shape) for key, item in value.items()}
    if kind == "boolean":
        if kind_of_value is not bool:
            raise _Unconvertible
        return value
    if kind in ("integer", "long"):
        if kind_of_value not in (int, float):
            raise _Unconvertible
        return int(value)
    if kind in ("double", "float"):
        if kind_of_value not in (int, float):
            raise _Unconvertible
        return float(value)
    if kind == "blob":
        if kind_of_value is bytes:
            return value
        if kind_of_value is str:
            return value.encode("utf-8")
        raise _Unconvertible
    raise _Unconvertible  # timestamps and anything newer


def _map_key(key: Any) -> str:
    if type(key) is not str:
        raise _Unconvertible
    return key


# Results moto serializes as they are (a PaginatedResult pages in its serialization: moto's path).
_PLAIN_RESULTS: frozenset[type] = frozenset({ActionResult, EmptyResult, DynamoResult})


class _Direct:
    """The ``before-call`` handler for one client: ``(http response, parsed)`` or ``None`` (wire)."""

    def __init__(
        self,
        client: Any,
        service: str,
        handler_type: type,
        lock: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self._client = client
        self._lock = lock
        self._service = service
        self._handler_type = handler_type
        self._emitter = client.meta.events._emitter  # the HierarchicalEmitter behind the aliaser
        self._baseline = {event: self._handlers(event) for event in _WIRE_EVENTS}
        # The emitter replaces its lookup cache on every (un)registration: while it is the same
        # object, the wire events' handlers are unchanged and need no second look.
        self._checked_cache: object = None
        self._wire_hooked = False

    def __call__(
        self, model: Any, params: Mapping[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not self._usable():
            return None
        if self._lock is None:
            status, headers, body, converted = self._answer(model.name, params)
        else:
            with self._lock():
                status, headers, body, converted = self._answer(model.name, params)
        raw_body = body.encode() if isinstance(body, str) else bytes(body or b"")
        # A plain dict of headers, as moto's stubber hands botocore.
        http = AWSResponse(params.get("url", ""), status, cast(Any, headers), _Raw(raw_body))
        return http, self._parse(model, http, converted)

    # -- when to step aside ---------------------------------------------------------------------

    def _usable(self) -> bool:

        if self._lock is None and not botocore_stubber.enabled:  # no mock_aws: the call goes where it would
            return False
        if float("inf") != moto_settings.INITIAL_NO_AUTH_ACTION_COUNT:
            return False  # moto authorizes from the signed request
        if not moto_config.service_whitelisted(self._service):
            return False
        cache = self._emitter._lookup_cache
        if cache is not self._checked_cache:
            self._wire_hooked = any(self._handlers(event) != self._baseline[event] for event in _WIRE_EVENTS)
            self._checked_cache = self._emitter._lookup_cache
        return not self._wire_hooked

    def _handlers(self, event: str) -> list[Any]:
        """Every handler that could run for ``event`` on one of this service's operations: those
        registered for the event, for the service (or ``*``), and for any one operation."""
        event_node = self._emitter._handlers._root["children"].get(event)
        if event_node is None:
            return []
        found = _values(event_node)
        for part in (self._service, "*"):
            child = event_node["children"].get(part)
            if child is not None:
                found.extend(_values_below(child))
        return found

    # -- moto's handler ------------------------------------------------------------------------

    def _answer(
        self, action: str, params: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any], Any, dict[str, Any] | None]:
        """moto's (status, headers, body) for the serialized request, as its HTTP dispatch gets it,
        and the parsed answer when its result was converted (the body is then empty)."""

        url = str(params.get("url", ""))
        body = params.get("body", b"")
        raw = body if isinstance(body, bytes) else str(body).encode()
        text = raw.decode("utf-8")
        headers: Any = CaseInsensitiveDict(dict(params.get("headers") or {}))
        parsed_url = urlparse(url)
        handler: Any = self._handler_type()
        # The attributes BaseResponse.setup_class derives from the request, set from botocore's
        # serialized request dict instead of a werkzeug request.
        handler.is_werkzeug_request = False
        handler.normalized_request = None
        handler.parsed_url = parsed_url
        handler.body = text
        handler.raw_body = raw
        handler.form_data = {}
        handler.querystring = {}
        handler.data = {}
        handler.uri = url
        handler.path = parsed_url.path
        handler.raw_path = parsed_url.path
        handler.method = str(params.get("method", "POST"))
        handler.region = self._client.meta.region_name
        handler.partition = get_partition(handler.region)
        handler.uri_match = {}
        handler.headers = headers

        handler.response_headers = {"server": "amazon.com", "date": http_date(utcnow())}
        operation, content_type = _moto_operation(handler.boto3_service_name, action)
        handler._aetheris_operation = operation
        handler._aetheris_content_type = content_type
        handler._aetheris_parsed = None
        handler.params = self._moto_params(handler, operation, headers, text, parsed_url.path)
        handler.access_key = self._access_key()
        handler.current_account = handler.get_current_account()
        mark_account_as_visited(
            account_id=handler.current_account,
            access_key=handler.access_key,
            service=handler.service_name,
            region=handler.region,
        )
        status, response_headers, response_body = handler.call_action()
        return int(status), dict(response_headers), response_body, handler._aetheris_parsed

    def _moto_params(self, handler: Any, operation_model: Any, headers: Any, text: str, path: str) -> Any:
        """What moto's ``parse_parameters`` makes of the request: its parser, its service model."""
        protocol = determine_request_protocol(operation_model.service_model, headers.get("Content-Type"))
        parser = PROTOCOL_PARSERS[protocol](operation_model, map_type=handler.PROTOCOL_PARSER_MAP_TYPE)
        return parser.parse(
            {
                "method": handler.method,
                "values": MultiDict(),
                "headers": headers,
                "body": text,
                "url_path": path,
                "url_params": {},
            }
        )

    def _access_key(self) -> str:
        credentials = self._client._request_signer._credentials
        key = getattr(credentials, "access_key", None) if credentials is not None else None
        return str(key) if key else "AKIAEXAMPLE"

    # -- botocore's parse ---------------------------------------------------------------------

    def _parse(self, model: Any, http: AWSResponse, converted: dict[str, Any] | None) -> dict[str, Any]:
        """What botocore's endpoint makes of the HTTP answer (``Endpoint._do_get_response``)."""

        response_dict = convert_to_response_dict(http, model)
        parser = self._client._response_parser
        parsed: dict[str, Any] = parser.parse(response_dict, model.output_shape)
        if converted is not None:
            parsed.update(converted)  # the body was left empty: ResponseMetadata came from the headers
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            error_shape = model.service_model.shape_for_error_code(code) if code is not None else None
            if error_shape is not None:
                parsed.update(parser.parse(response_dict, error_shape))
        if "ResponseMetadata" in parsed:
            parsed["ResponseMetadata"]["RetryAttempts"] = 0  # as the wire path's first attempt
        return parsed


@functools.lru_cache(maxsize=256)
def _moto_operation(service_name: str, action: str) -> tuple[Any, str]:
    """moto's operation model for ``action`` and the Content-Type its JSON serializer answers with."""
    service_model = get_service_model(service_name)
    version = service_model.metadata.get("jsonVersion", "1.0")
    return service_model.operation_model(action), f"application/x-amz-json-{version}"


def _values(node: dict[str, Any]) -> list[Any]:
    values = node.get("values")
    return [] if not values else [*values.first, *values.middle, *values.last]


def _values_below(node: dict[str, Any]) -> list[Any]:
    found = _values(node)
    for child in node["children"].values():
        found.extend(_values_below(child))
    return found


class _Raw:
    """The raw stream ``AWSResponse`` reads its content from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        if self._data:
            yield self._data
