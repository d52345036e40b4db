"""A local stand-in for API Gateway's HTTP API: real HTTP on loopback in, payload v2 events out.

``serve(handler)`` starts a ``ThreadingHTTPServer`` on ``127.0.0.1`` (port 0 picks a free one).
Each request becomes the event an HTTP API with a ``$default`` route and payload format 2.0 sends
to its Lambda — ``rawPath``, ``rawQueryString``, lower-cased ``headers`` (repeats joined by commas),
``cookies``, ``queryStringParameters``, ``requestContext`` with ``http`` and a fresh request id,
``body`` with ``isBase64Encoded`` (text bodies as text, others base64) — and the handler's answer
(``statusCode``, ``headers``, ``cookies``, ``body``) is written back, as API Gateway does,
including its 413 for bodies over 10 MB and its bare 500 when the function raises.

Invocations are serialised, one at a time, as in one Lambda execution environment: handlers may
keep per-invocation state in globals (Powertools' resolver does), so concurrent requests queue.

With a ``token`` (``aetheris dev`` passes ``$AETHERIS_API_TOKEN``), every request must carry
``Authorization: Bearer <token>``, as a deployed API requires SigV4 or a JWT: any other request is
answered 401 ``{"error": {"code": "unauthorized", ...}}`` with ``WWW-Authenticate: Bearer`` and the
handler is never called. The comparison takes the same time whatever the token sent, and neither
token is ever logged or echoed; log lines name a request by its path, never its query or headers.
As in ``template.yaml``, two kinds of route pass without it: the callback answers (their callback
token is their credential) and the UI's static files (they hold no data; the routes the pages call
keep their authorization).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aetheris_infra.lambda_events import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], Any]

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's payload quota
ACCOUNT_ID = "123456789012"
API_ID = "local"
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "+json", "+xml")
_FORM_TYPE = "application/x-www-form-urlencoded"

logger = logging.getLogger("aetheris.http_bridge")


def http_api_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    now: float | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The HTTP API payload v2 event for one request (``target`` is the path and query as sent)."""
    now = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    split = urlsplit(target)
    path = split.path or "/"
    lowered: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    cookie_header = lowered.pop("cookie", None)
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": split.query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": lowered.get("host", "127.0.0.1").split(".")[0].split(":")[0],
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookie_header:
        event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
    if query:
        event["queryStringParameters"] = query
    if body:
        text = _as_text(body, lowered.get("content-type", ""))
        event["body"] = text if text is not None else base64.b64encode(body).decode()
        event["isBase64Encoded"] = text is None
    return event


def _as_text(body: bytes, content_type: str) -> str | None:
    kind = content_type.split(";")[0].strip().lower()
    if kind and kind != _FORM_TYPE and not any(t in kind for t in _TEXT_TYPES):
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


class BridgeServer:
    """A running bridge: ``url`` to send requests to, ``close()`` (or ``with``) to stop it."""

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None
    ) -> None:
        if token is not None and not token.strip():
            raise ValueError("an API token must not be empty (leave it unset for an open local API)")
        self.handler = handler
        self._token = None if token is None else token.encode()
        self._invoke_lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _request_handler(self))
        self._server.daemon_threads = True
        # A short poll interval keeps close() quick: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="http-bridge", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requires_token(self) -> bool:
        return self._token is not None

    def refusal(self, authorization: str | None) -> str | None:
        """Why a request with this ``Authorization`` header may not pass, or ``None`` if it may."""
        if self._token is None:
            return None
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "this API requires a bearer token: send Authorization: Bearer $AETHERIS_API_TOKEN"
        # compare_digest: how long the comparison takes says nothing about how much of it matched.
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            return "wrong bearer token: send Authorization: Bearer $AETHERIS_API_TOKEN (of `aetheris dev`)"
        return None

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LocalLambdaContext(
            function_name="aetheris-api", aws_request_id=event["requestContext"]["requestId"]
        )
        with self._invoke_lock:
            return self.handler(event, context)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> BridgeServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def serve(
    handler: Handler, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None
) -> BridgeServer:
    """Start a bridge that hands every request on ``host:port`` to ``handler(event, context)``; with a
    ``token``, only requests that carry it as their bearer token."""
    return BridgeServer(handler, host, port, token=token)


def _request_handler(bridge: BridgeServer) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            try:
                body = self._read_body()
            except ValueError:  # a Content-Length or chunk size that is not a number
                self.close_connection = True
                self._gateway_error(400, "Bad Request")
                return
            if body is None:
                self.close_connection = True  # the unread body must not be taken for the next request
                self._gateway_error(413, "Request Entity Too Large")
                return
            open_path = is_open(self.command, urlsplit(self.path).path)
            refusal = None if open_path else bridge.refusal(self.headers.get("authorization"))
            if refusal is not None:
                self._unauthorized(refusal)
                return
            event = http_api_event(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            try:
                result = bridge.invoke(event)
            except Exception:  # what API Gateway answers when the function fails
                logger.exception("the handler raised on %s %s", self.command, _loggable(self.path))
                self._gateway_error(500, "Internal Server Error")
                return
            self._reply(*_response(result))

        def _read_body(self) -> bytes | None:
            """The request body (``None`` if over the quota), sized by Content-Length or chunked."""
            if "chunked" not in (self.headers.get("transfer-encoding") or "").lower():
                length = int(self.headers.get("content-length") or 0)
                return None if length > MAX_BODY_BYTES else self.rfile.read(length)
            chunks: list[bytes] = []
            total = 0
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(chunks)

        def _gateway_error(self, status: int, message: str) -> None:
            """An answer API Gateway itself gives, in its own shape, without calling the function."""
            self._reply(
                status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()
            )

        def _unauthorized(self, message: str) -> None:
            body = json.dumps({"error": {"code": "unauthorized", "message": message}}).encode()
            headers = {"content-type": "application/json", "www-authenticate": 'Bearer realm="aetheris"'}
            self._reply(401, headers, body)

        def _reply(
            self, status: int, headers: dict[str, str], body: bytes, cookies: Sequence[str] = ()
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            for cookie in cookies:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # Not the request line: its query may carry a token. Headers are never logged.
            logger.debug('"%s %s" %s %s', self.command, _loggable(self.path), code, size)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

        def __getattr__(self, name: str) -> Any:
            # Every method reaches the function (TRACE, QUERY, any token), as on a $default route:
            # the function, not the bridge, says which methods a path takes.
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

    return RequestHandler


# Routes whose own credential is in the request (a callback token): no bearer token needed.
CALLBACK_PATHS: frozenset[str] = frozenset({"/callbacks/succeed", "/callbacks/fail"})


def is_open(method: str, path: str) -> bool:
    """Whether the template leaves this route without an authorizer (see the module docstring)."""
    if method == "POST" and path in CALLBACK_PATHS:
        return True
    return method == "GET" and (path == "/ui" or (path.startswith("/ui/") and "/" not in path[4:]))


def _loggable(target: str) -> str:
    """The path of a request target, without its query (which may carry tokens, e.g. ``?token=``)."""
    split = urlsplit(target)
    return split.path + ("?…" if split.query else "")


def _response(result: Any) -> tuple[int, dict[str, str], bytes, list[str]]:
    """API Gateway's reading of a payload v2 answer: a dict with ``statusCode``, or a bare JSON value."""
    if not isinstance(result, dict) or "statusCode" not in result:
        text = result if isinstance(result, str) else json.dumps(result)
        return 200, {"content-type": "application/json"}, text.encode(), []
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    return int(result["statusCode"]), headers, body, [str(c) for c in result.get("cookies") or []]
