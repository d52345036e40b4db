"""Append-only JSON-lines files that several processes write at once: the external effect ledger and
the fault log of a chaos run.

Each record is one ``os.write`` of one line to a file opened with ``O_APPEND``: on a local file
system the kernel appends each such write whole, so lines from different processes never interleave,
and a process killed with SIGKILL has either written its line or not. Records are written at once,
never buffered: a worker that dies right after a call has still reported it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class JsonLines:
    """One append-only JSON-lines file; ``append`` is safe across threads and processes."""

    def __init__(self, path: str | Path, stamp: bool = False) -> None:
        self.path = Path(path)
        self.stamp = stamp  # add "t" (epoch seconds) to every record that has none
        self._fd: int | None = None
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> None:
        if self.stamp and "t" not in record:
            record = {**record, "t": time.time()}
        line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def read(self) -> list[dict[str, Any]]:
        return list(self)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)
