"""The one chokepoint every recorded value and error passes before any write.

Values: serialized the one way the runtime stores them (``_serde.dump``: refused unless they read
back as they were, size-checked against what can be stored), then offloaded to the payload bucket
when big. Errors: bounded by ``ErrorInfo.of`` (message and arguments capped, so a 200 KB exception
message can never make its record too big to write — which would retry the tick, and call the
tool again, without end); when the message was cut and a payload bucket exists, the whole text is
kept there and the record points at it (``ErrorInfo.full``).

A write that still fails is a store failure, retried by redelivery and bounded by the crash-loop
guard — never a loop: nothing user code produces reaches a write unbounded.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from aetheris import _serde
from aetheris._engine.store_io import runtime_io
from aetheris._store.payloads import Payloads
from aetheris.errors import ErrorInfo


class Recorder:
    def __init__(self, job_id: str, payloads: Payloads) -> None:
        self.job_id = job_id
        self.payloads = payloads

    def value(self, value: Any, via: TypeAdapter[Any], what: str) -> str:
        """The text to write for ``value`` (raises ``UnstorableValue`` / ``PayloadTooLarge``)."""
        text = _serde.dump(value, via, what, self.payloads.limit)
        with runtime_io():  # a big value goes to S3 before the write that references it
            return self.payloads.offload(self.job_id, text)

    def error(self, error: BaseException) -> ErrorInfo:
        info = ErrorInfo.of(error)
        if info.args is not None or self.payloads.bucket is None:
            return info
        full = _full_message(error)
        if full is None or len(full) <= len(info.message):
            return info
        with runtime_io():
            ref = self.payloads.offload(self.job_id, json.dumps(full), always=True)
        return info.model_copy(update={"full": ref})


def _full_message(error: BaseException) -> str | None:
    try:
        return str(error).encode("utf-8", "backslashreplace").decode("utf-8")
    except Exception:  # noqa: BLE001 - ErrorInfo.of already recorded what could be said
        return None
