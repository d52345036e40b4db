"""Step worker Lambda (SQS → ``ReportBatchItemFailures``). The logic lives in the runtime layer."""

from aetheris.handlers.worker import handler

__all__ = ["handler"]
