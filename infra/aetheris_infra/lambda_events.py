"""Kept for existing imports: the Lambda event shapes live in ``aetheris._local.lambda_events``."""

from aetheris._local.lambda_events import LocalLambdaContext, scheduled_event, sqs_event, sqs_record

__all__ = ["LocalLambdaContext", "scheduled_event", "sqs_event", "sqs_record"]
