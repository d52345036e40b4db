"""Kept for existing imports: the local SQS event source lives in ``aetheris._local.sqs_source``."""

from aetheris._local.sqs_source import Handler, PollResult, SqsEventSource

__all__ = ["Handler", "PollResult", "SqsEventSource"]
