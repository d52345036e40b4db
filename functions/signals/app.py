"""Signal-ingest Lambda (SQS → ``ReportBatchItemFailures``). The logic lives in the runtime layer."""

from aetheris.handlers.signals import handler

__all__ = ["handler"]
