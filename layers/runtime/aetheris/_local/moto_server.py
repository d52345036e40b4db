"""A moto server on loopback that handles one request at a time.

DynamoDB evaluates a conditional write atomically; moto's backends do not lock, so two threads
(in-process or in a threaded server) can both pass the same condition. Serving requests one at a
time restores the guarantee the runtime relies on, so races between workers are real races on a
store with DynamoDB's semantics. Long-poll receives would block everyone: the local workers poll
with ``WaitTimeSeconds=0``.
"""

from __future__ import annotations

import logging
import threading
import urllib.request

from moto.moto_server.threaded_moto_server import MotoRequestHandler  # type: ignore[attr-defined]
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from aetheris._local import moto_speedups


class SerialMotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SerialMotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_speedups.install()  # moto's backends live in this process: same answers, less work
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self._host, self._port, app, threaded=False, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        self.reset()
        return self

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
