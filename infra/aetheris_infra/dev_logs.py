"""``aetheris dev``'s log lines: text a person reads in a terminal, each with its tick's keys.

On Lambda the same lines are JSON for CloudWatch. Here the library's ``logging`` lines (engine,
``ctx.logger``, ``sctx.logger``) get a text handler on stderr (``_log_context.Readable``), and the
handlers' Powertools loggers keep their formatter — so ``append_keys`` and
``inject_lambda_context`` still work — with a text serializer in place of ``json.dumps``, writing to
stderr too (stdout stays the CLI's: ``--json`` prints its one ready line there).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import IO, Any

from aetheris import _log_context

# Keys a Powertools line always has, shown by position rather than as key=value.
_SHOWN = {"timestamp", "level", "service", "name", "message", "location", "exception", "exception_name"}
# Keys of the Lambda context (inject_lambda_context): the same on every line of the local stack.
_CONTEXT = {"cold_start", "function_name", "function_memory_size", "function_arn", "function_request_id"}


def readable(log: Mapping[str, Any]) -> str:
    """One Powertools log dict as a line of text: the tick keys first, then the rest of ``extra``."""
    head = f"{log.get('timestamp', '')} {log.get('level', '')} {log.get('name') or log.get('service', '')}"
    order = [k for k in (*_log_context.TICK_KEYS, "step") if k in log]
    order += sorted(k for k in log if k not in _SHOWN and k not in _CONTEXT and k not in order)
    keys = " ".join(f"{k}={log[k]}" for k in order)
    line = f"{head}: {log.get('message', '')}" + (f"  [{keys}]" if keys else "")
    if log.get("exception"):
        line += f"\n{log['exception']}"
    return line


def use_readable_logs(stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Switch this process's Aetheris lines to text on ``stream`` (stderr); once is enough."""
    from aetheris.handlers import signals, sweeper, worker

    out = stream or sys.stderr
    library = logging.getLogger("aetheris")
    handler = logging.StreamHandler(out)
    handler.setFormatter(_log_context.Readable())
    library.handlers = [handler]
    library.propagate = False
    library.setLevel(level)
    for module in (worker, signals, sweeper):
        powertools = module.logger
        powertools.registered_formatter.json_serializer = readable
        registered = powertools.registered_handler
        if isinstance(registered, logging.StreamHandler):
            registered.setStream(out)
