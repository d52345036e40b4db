"""Metric names (``aetheris._observability``) against ``template.yaml``, both ways: every metric the
code defines is on the dashboard, everything the dashboard and the alarms watch is defined in code,
and the alarms an SRE relies on watch what the code emits under the same name and dimensions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, JobContext, NonRetryableError, StepContext
from aetheris import _observability as obs
from aetheris.testing import LocalRuntime
from tests.infra.test_template_ops import ALARMS, dashboard, emitted_metrics, expected_series, plotted, props

FAMILIES = ("Tick_", "Signal_")  # per-outcome counters, named from the outcome enums


def aetheris_alarms() -> dict[str, dict[str, Any]]:
    return {lid: props(lid) for lid in ALARMS if props(lid).get("Namespace") == obs.NAMESPACE}


def alarm_series(spec: dict[str, Any]) -> tuple[str, ...]:
    dimensions = [part for d in spec.get("Dimensions", []) for part in (d["Name"], d["Value"])]
    return (spec["MetricName"], *dimensions)


@pytest.mark.parametrize("metric", list(obs.Metric), ids=str)
def test_dashboard_plots_every_metric_the_code_defines(metric: obs.Metric) -> None:
    assert expected_series(metric) in plotted(obs.NAMESPACE)


def test_dashboard_and_alarms_watch_only_metrics_the_code_defines() -> None:
    defined = {expected_series(m) for m in obs.Metric}
    watched = plotted(obs.NAMESPACE) | {alarm_series(spec) for spec in aetheris_alarms().values()}

    unknown = {s for s in watched if s not in defined and not s[0].startswith(FAMILIES)}
    assert unknown == set()
    assert all(widget["properties"]["metrics"] for widget in dashboard()["widgets"])


def test_alarm_on_stuck_jobs_fires_after_five_minutes_on_the_dimensionless_gauge() -> None:
    (spec,) = [s for s in aetheris_alarms().values() if s["MetricName"] == obs.Metric.STUCK_JOBS]

    assert "Dimensions" not in spec and obs.SERVICES[obs.Metric.STUCK_JOBS] is None
    assert (spec["Statistic"], spec["Threshold"], spec["ComparisonOperator"]) == (
        "Maximum",
        0,
        "GreaterThanThreshold",
    )
    assert spec["Period"] * spec["EvaluationPeriods"] == 300


def test_alarms_on_oldest_pending_age_and_fenced_out_commits_watch_the_emitted_series() -> None:
    by_metric = {spec["MetricName"]: spec for spec in aetheris_alarms().values()}

    age = by_metric[obs.Metric.OLDEST_PENDING_AGE]
    fenced = by_metric[obs.Metric.STALE_FENCE_REJECTIONS]
    assert alarm_series(age) == expected_series(obs.Metric.OLDEST_PENDING_AGE) and age["Threshold"] > 0
    assert alarm_series(fenced) == expected_series(obs.Metric.STALE_FENCE_REJECTIONS)
    assert (fenced["Statistic"], fenced["Threshold"]) == ("Sum", 0)
    assert {"StuckJobsAlarm", "OldestPendingAgeAlarm", "FencedOutCommitsAlarm"} <= set(ALARMS)


def busy_app() -> App:
    app = App("telemetry")

    def book(sctx: StepContext, seat: str) -> str:
        return sctx.tool("seats.book", lambda: f"booked {seat}")

    def unbook(sctx: StepContext, seat: str) -> str:
        return f"unbooked {seat}"

    @app.job("book")
    def book_job(ctx: JobContext, seat: str) -> str:
        ctx.step(book, seat, compensate=unbook)
        decision: dict[str, Any] = ctx.wait_for_signal("go")
        if not decision.get("ok"):
            raise NonRetryableError("told to stop")
        return "done"

    return app


@pytest.fixture(scope="module")
def engine_emission() -> set[tuple[str, ...]]:
    """The EMF series the handlers print while jobs complete, fail (compensated) and are cancelled,
    with a worker dying after a tool recorded its result (the takeover finds it recorded)."""
    capture = pytest.MonkeyPatch()
    import io
    import sys

    out = io.StringIO()
    capture.setattr(sys, "stdout", out)
    try:
        with LocalRuntime(busy_app()) as local:
            if getattr(local.runtimes[0].services, "telemetry", None) is None:
                pytest.skip("the engine reports no Telemetry yet (lead: Services.telemetry, see the report)")
            local.crash_at("after_record")
            ok, failing, cancelled = (local.start("book", seat) for seat in ("1A", "1B", "1C"))
            local.run_until_idle()
            local.advance(timedelta(seconds=1))
            local.signal(ok, "go", {"ok": True})
            local.signal(failing, "go", {"ok": False})
            local.cancel(cancelled)
            for job_id in (ok, failing, cancelled):
                local.wait(job_id)
    finally:
        capture.undo()
    return emitted_metrics(out.getvalue())


@pytest.mark.parametrize("metric", sorted(obs.FROM_ENGINE), ids=str)
def test_engine_metric_is_emitted_by_the_worker_once_wired(
    metric: obs.Metric, engine_emission: set[tuple[str, ...]]
) -> None:
    assert expected_series(metric) in engine_emission
