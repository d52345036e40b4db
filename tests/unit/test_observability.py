"""``aetheris._observability``: the replay-safe logger, the engine's telemetry buffer and its EMF."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics

from aetheris import _observability as obs


class Replay:
    def __init__(self, replaying: bool) -> None:
        self.replaying = replaying

    def __call__(self) -> bool:
        return self.replaying


def powertools_logger(name: str) -> tuple[Logger, io.StringIO]:
    stream = io.StringIO()
    return Logger(service=name, stream=stream, level="DEBUG"), stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_replay_safe_logger_while_replaying_writes_nothing_and_counts_the_line() -> None:
    target, stream = powertools_logger("replay-silent")
    replay = Replay(replaying=True)
    log = obs.ReplaySafeLogger(target, replay, job_id="j-1")

    log.info("looked up order %s", "o-1")
    log.error("boom")

    assert stream.getvalue() == ""
    assert log.suppressed == 2


def test_replay_safe_logger_live_lines_carry_the_job_keys_and_the_call_site() -> None:
    target, stream = powertools_logger("replay-live")
    replay = Replay(replaying=True)
    log = obs.ReplaySafeLogger(target, replay, job_id="j-1", job_type="refund", attempt=None)
    log.info("replayed line")
    replay.replaying = False

    log.bind(step="lookup").warning("order %s is late", "o-1", extra={"days": 3})

    (line,) = lines(stream)
    assert line["message"] == "order o-1 is late"
    assert (line["level"], line["job_id"], line["job_type"], line["step"], line["days"]) == (
        "WARNING",
        "j-1",
        "refund",
        "lookup",
        3,
    )
    assert "attempt" not in line  # a key not known is left out, not logged as null
    assert line["location"].startswith("test_replay_safe_logger_live_lines")


def test_replay_safe_logger_over_plain_logging_passes_keys_as_extra(caplog: pytest.LogCaptureFixture) -> None:
    log = obs.ReplaySafeLogger(logging.getLogger("tests.replay"), Replay(False), job_id="j-2")

    with caplog.at_level(logging.INFO, "tests.replay"):
        log.info("live")

    (record,) = caplog.records
    assert (record.getMessage(), record.job_id) == ("live", "j-2")  # type: ignore[attr-defined]
    assert record.funcName == "test_replay_safe_logger_over_plain_logging_passes_keys_as_extra"


def test_telemetry_drain_returns_each_sample_once_with_bounded_job_types() -> None:
    telemetry = obs.Telemetry()
    for n in range(obs.MAX_DIMENSION_VALUES + 5):
        telemetry.job_ended(f"type-{n}", "COMPLETED")
    telemetry.job_ended("type-0", "FAILED", compensated=True)

    samples = telemetry.drain()

    assert telemetry.drain() == []
    kinds = {s.dimension for s in samples if s.metric is obs.Metric.JOBS_COMPLETED}
    assert len(kinds) == obs.MAX_DIMENSION_VALUES + 1 and obs.OTHER in kinds
    assert samples[-2:] == [
        obs.Sample(obs.Metric.JOBS_FAILED, 1, "type-0"),
        obs.Sample(obs.Metric.JOBS_COMPENSATED, 1, "type-0"),
    ]


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_publish_emits_plain_samples_with_service_and_broken_down_ones_with_their_dimension(
    capsys: pytest.CaptureFixture[str],
) -> None:
    telemetry = obs.Telemetry()
    telemetry.operation("step", timedelta(milliseconds=120))
    telemetry.effect_executed()
    telemetry.signal_consumed(timedelta(seconds=2))
    telemetry.job_ended("refund", "CANCELLED")
    metrics = Metrics(namespace=obs.NAMESPACE, service="worker")

    obs.publish(metrics, telemetry.drain(), "worker")
    metrics.flush_metrics()
    documents = emf(capsys.readouterr().out)

    by_name = {m["Name"]: d for d in documents for x in d["_aws"]["CloudWatchMetrics"] for m in x["Metrics"]}
    duration = by_name["OperationDuration"]
    assert duration["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "operation"]]
    assert (duration["operation"], duration["OperationDuration"]) == ("step", [120.0])
    assert duration["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Milliseconds"
    assert (by_name["JobsCancelled"]["job_type"], by_name["JobsCancelled"]["service"]) == ("refund", "worker")
    plain = by_name["EffectsExecuted"]
    assert plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert plain["EffectsExecuted"] == [1.0] and plain["SignalToResumeLatency"] == [2000.0]
    assert plain["SignalsConsumed"] == [1.0]


def test_metric_registry_gives_each_metric_a_service_and_each_breakdown_a_known_metric() -> None:
    assert set(obs.SERVICES) == set(obs.Metric)
    assert set(obs.BROKEN_DOWN) <= set(obs.Metric) and set(obs.Metric) >= obs.FROM_ENGINE
    assert obs.SERVICES[obs.Metric.STUCK_JOBS] is None  # the stuck-jobs alarm watches one number
    assert obs.tick_samples("deferred") == [obs.Sample(obs.Metric.LEASE_CONFLICTS, 1)]
    assert obs.tick_samples("lease_lost") == [obs.Sample(obs.Metric.STALE_FENCE_REJECTIONS, 1)]
    assert obs.tick_samples("advanced") == []


def test_route_engine_logs_sends_library_lines_through_powertools_with_appended_keys() -> None:
    source, stream = powertools_logger("route-test")
    library = logging.getLogger("aetheris")
    before = (library.handlers[:], library.propagate, library.level)
    try:
        obs.route_engine_logs(source)
        source.thread_safe_append_keys(job_id="j-3", seq=4)
        logging.getLogger("aetheris.worker").error("fenced out")
        source.thread_safe_remove_keys(["job_id", "seq"])
    finally:
        library.handlers, library.propagate = before[0], before[1]
        library.setLevel(before[2])

    (line,) = lines(stream)
    assert (line["message"], line["job_id"], line["seq"], line["name"]) == (
        "fenced out",
        "j-3",
        4,
        "aetheris.worker",
    )


def test_publish_with_metrics_disabled_prints_no_broken_down_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    telemetry = obs.Telemetry()
    telemetry.job_ended("refund", "COMPLETED")

    obs.publish(Metrics(namespace=obs.NAMESPACE, service="worker"), telemetry.drain(), "worker")

    assert capsys.readouterr().out == ""


def test_route_engine_logs_on_lambda_only_routes_inside_a_lambda_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, _ = powertools_logger("route-once")
    library = logging.getLogger("aetheris")
    before = (library.handlers[:], library.propagate)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    try:
        obs.route_engine_logs_on_lambda(source)
        untouched = library.propagate
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "aetheris-worker")
        obs.route_engine_logs_on_lambda(source)
        routed = (library.propagate, list(library.handlers))
    finally:
        library.handlers, library.propagate = before
        obs._routed.discard("route-once")

    assert untouched is before[1]
    assert routed == (False, source.handlers)
