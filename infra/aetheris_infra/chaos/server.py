"""The chaos run's moto server: its own process, one request at a time, every DynamoDB write journaled.

    python -m aetheris_infra.chaos.server --journal PATH     # prints its URL, serves until SIGTERM

Serving one request at a time keeps DynamoDB's atomic conditional writes (as ``SerialMotoServer``
does; moto's backends do not lock), so the workers' races are real races on a store with
DynamoDB's semantics. It runs in a process of its own so that no worker or driver holds its GIL.

The journal is the independent witness of the fencing protocol: every DynamoDB write request
(``UpdateItem``, ``PutItem``, ``DeleteItem``, ``TransactWriteItems``) with its HTTP status, and the
answer of a successful ``UpdateItem`` (a slot claim returns the old item, so the fence it won is
known), one JSON line each, in the order the server applied them. It is written by the server,
before the answer leaves, so a client killed mid-call cannot hide a write it made.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from moto.moto_server.threaded_moto_server import MotoRequestHandler  # type: ignore[attr-defined]
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

JOURNALED = {"UpdateItem", "PutItem", "DeleteItem", "TransactWriteItems"}
# A client paused (SIGSTOP) between connecting and sending would hold the one serving thread:
# a connection that sends nothing for this long is dropped, and the client retries.
REQUEST_TIMEOUT_S = 1.0
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Handler(MotoRequestHandler):
    timeout = REQUEST_TIMEOUT_S


class JournalingApp:
    """WSGI middleware: pass every request on; journal the DynamoDB writes and their answers."""

    def __init__(self, app: WsgiApp, journal: IO[str]) -> None:
        self.app = app
        self.journal = journal
        self.writes = 0
        self.stats: dict[str, tuple[int, float]] = {}  # operation → (requests, seconds spent)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", "")) or str(environ.get("PATH_INFO", ""))
        started = time.perf_counter()
        try:
            return self._serve(target, environ, start_response)
        finally:
            count, spent = self.stats.get(target, (0, 0.0))
            self.stats[target] = (count + 1, spent + time.perf_counter() - started)

    def _serve(self, target: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        prefix, _, operation = target.partition(".")
        if not prefix.startswith("DynamoDB") or operation not in JOURNALED:
            return list(self.app(environ, start_response))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        seen: list[str] = []

        def remember(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        answer = b"".join(self.app(environ, remember))
        status = int(seen[0].split()[0]) if seen else 0
        self.writes += 1
        record = {
            "n": self.writes,
            "t": round(time.time(), 3),
            "op": operation,
            "status": status,
            "req": json.loads(body or b"{}"),
            "resp": json.loads(answer or b"{}") if operation == "UpdateItem" and status == 200 else None,
        }
        self.journal.write(json.dumps(record, separators=(",", ":")) + "\n")
        return [answer]


def serve(journal_path: str, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGTERM; then write the requests served per operation next to the journal."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with open(journal_path, "a", buffering=1, encoding="utf-8") as journal:
        app = JournalingApp(DomainDispatcherApplication(create_backend_app), journal)
        server = make_server(host, port, app, threaded=False, request_handler=_Handler)
        bound_host, bound_port = server.server_address[:2]
        print(f"http://{bound_host!s}:{bound_port}", flush=True)

        def stop(*_: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            stats = {op: {"requests": n, "seconds": round(t, 3)} for op, (n, t) in sorted(app.stats.items())}
            with open(f"{journal_path}.stats.json", "w", encoding="utf-8") as out:
                json.dump(stats, out, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--journal", required=True, help="JSON-lines file for the DynamoDB write journal")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    serve(args.journal, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
