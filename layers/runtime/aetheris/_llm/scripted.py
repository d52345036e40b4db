"""``ScriptedConverse``: a Converse client with no network, for tests, demos and offline stacks.

It answers ``converse(**request)`` with what ``respond(request)`` returns, in the shape Bedrock's
Converse API returns (``output.message``, ``stopReason``, ``usage``, ``metrics``): a string is a
text answer (``end_turn``); a dict ``{"name": ..., "input": {...}}`` is a tool use (``tool_use``),
which a request without ``toolConfig`` cannot get; a list is the content blocks themselves. Usage
is counted as Bedrock would roughly count it, one token per four characters of the request's text
(at least one) and of the answer. ``throttle_next = n`` makes the next ``n`` calls fail with
``ThrottlingException`` exactly as botocore raises it. Every request is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

Respond = Callable[[Mapping[str, Any]], "str | Mapping[str, Any] | list[dict[str, Any]]"]


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _request_text(request: Mapping[str, Any]) -> str:
    return json.dumps(
        [request.get("system"), request.get("messages"), request.get("toolConfig")], default=str
    )


class ScriptedConverse:
    def __init__(self, respond: Respond, *, latency_ms: int = 1) -> None:
        self._respond = respond
        self.latency_ms = latency_ms
        self.requests: list[dict[str, Any]] = []
        self.throttle_next = 0
        self._lock = threading.Lock()

    def converse(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.requests.append(request)
            throttled = self.throttle_next > 0
            self.throttle_next -= 1 if throttled else 0
        if throttled:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Too many requests, please wait."}},
                "Converse",
            )
        answer = self._respond(request)
        content, stop = self._content(answer, request)
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {
                "inputTokens": _tokens(_request_text(request)),
                "outputTokens": _tokens(json.dumps(content)),
                "totalTokens": _tokens(_request_text(request)) + _tokens(json.dumps(content)),
            },
            "metrics": {"latencyMs": self.latency_ms},
        }

    def _content(self, answer: Any, request: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if isinstance(answer, str):
            return [{"text": answer}], "end_turn"
        if isinstance(answer, list):
            uses = any("toolUse" in block for block in answer)
            return list(answer), "tool_use" if uses else "end_turn"
        if not request.get("toolConfig"):
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "toolUse without a toolConfig"}},
                "Converse",
            )
        use = {
            "toolUseId": f"tooluse_{len(self.requests):04d}",
            "name": answer["name"],
            "input": answer["input"],
        }
        return [{"toolUse": use}], "tool_use"
