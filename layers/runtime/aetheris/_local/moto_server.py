"""A moto server on loopback that handles one request at a time.

DynamoDB evaluates a conditional write atomically; moto's backends do not lock, so two threads
(in-process or in a threaded server) can both pass the same condition. Serving requests one at a
time restores the guarantee the runtime relies on, so races between workers are real races on a
store with DynamoDB's semantics. Long-poll receives would block everyone: the local workers poll
with ``WaitTimeSeconds=0``.

``serve_in_process(client)`` lets a client of this process reach the same moto backends without
HTTP: its requests go to moto's own request handling (the stubber ``mock_aws`` uses), under the
same lock as the server's requests, so every request — over HTTP or not — still runs alone. A
request over loopback HTTP costs ~4 ms of CPU before moto starts on it (a new connection per
request: a one-thread server cannot keep connections open); in-process that is gone. Its DynamoDB
and SQS calls go further: moto's handlers answer botocore's serialized request directly
(``moto_direct``, unless ``AETHERIS_MOTO_DIRECT=0``), again under the lock.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Iterable
from typing import Any

from moto.core.botocore_stubber import BotocoreStubber
from moto.moto_server.threaded_moto_server import MotoRequestHandler  # type: ignore[attr-defined]
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from aetheris._local import moto_direct, moto_speedups


class SerialMotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        # Held by every request while moto handles it: the server's and in-process ones alike.
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SerialMotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_speedups.install()  # moto's backends live in this process: same answers, less work
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            with self.lock:  # the whole response is made (and closed, as WSGI asks) under the lock
                answer = moto_app(environ, start_response)
                try:
                    return list(answer)
                finally:
                    close = getattr(answer, "close", None)
                    if close is not None:
                        close()

        self._server = make_server(
            self._host, self._port, app, threaded=False, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        self.reset()
        return self

    def serve_in_process(self, client: Any) -> Any:
        """Send ``client``'s requests to this server's moto backends in-process (one at a time with
        every other request). The client must use AWS's own endpoint (no ``endpoint_url``), which
        moto's request routing recognises; it returns ``client``."""
        stubber = BotocoreStubber()
        stubber.enabled = True

        def send(event_name: str, request: Any, **kwargs: Any) -> Any:
            with self.lock:
                return stubber(event_name, request, **kwargs)

        client.meta.events.register("before-send", send)
        # DynamoDB and SQS calls skip even the stubber's HTTP-shaped round trip (moto_direct), under
        # the same lock; the stubber above still serves S3 and any call a wire-level hook claims.
        if moto_direct.enabled():
            moto_direct.attach(client, lock=lambda: self.lock)
        return client

    def reset(self) -> None:
        """Wipe every table and queue: moto's backends are process-wide, not per server."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        if self._server is not None:
            self.reset()
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SerialMotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
