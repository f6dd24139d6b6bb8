"""`/metrics` (Prometheus text format, prometheus-client) and `/healthz` of the tracker.

The metrics are collected when scraped, from what the tracker holds, so ages grow between rounds as they do
in fact. Per pair and window: forecasts made and missed, the live MAE ratio to persistence with its DM p-value,
and each range's coverage; per pair: the age of the newest forecast, of the served model and of the newest
training run, whether its model server answered the last ask, trainer runs failed in a row, its interval and the
longest wait its retraining schedule allows (what the chart's alerts compare ages with); per pair and live
decision: its statistic, the threshold at which it acts, the forecasts it used and whether it is on; per pair and
shadow: the served version's MAE and pinball loss over the shadow's; per pair and decision rule, since the served
version went live (refreshed daily): its log return after fees, and how much more than holding (or than its twin)
it ends with, with the 95% interval's ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from makeusrich.contract import VERSION_FORMAT, iso_z
from makeusrich.market import interval_ms
from makeusrich.pair import longest_gap_s
from makeusrich.store import TrackSummary
from makeusrich.track.tracker import RoundLoop

PREFIX = "makeusrich_track_"


def _age(now: datetime, moment: str | None) -> float | None:
    if not moment:
        return None
    try:
        return (now - datetime.fromisoformat(moment)).total_seconds()
    except ValueError:
        return None


class TrackCollector(Collector):
    def __init__(self, tracker: RoundLoop) -> None:
        self.tracker = tracker
        self._periods: dict[tuple[str, str], float] = {}  # (schedule, day) -> its longest gap between runs

    def retrain_period_s(self, schedule: str, now: datetime) -> float:
        """The schedule's longest gap between runs from today, computed once a day per schedule (most pairs
        share a few schedules, and a thousand pairs are scraped every minute)."""
        key = (schedule, now.date().isoformat())
        if key not in self._periods:
            if len(self._periods) > 1000:
                self._periods.clear()
            self._periods[key] = longest_gap_s(schedule, now)
        return self._periods[key]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.tracker.now()
        pair_labels = ["namespace", "pair"]
        window_labels = [*pair_labels, "window"]
        made = GaugeMetricFamily(
            PREFIX + "forecasts", "origins with a live forecast in the window", labels=window_labels
        )
        missed = GaugeMetricFamily(PREFIX + "missed", "origins recorded as gaps in the window", labels=window_labels)
        ratio = GaugeMetricFamily(
            PREFIX + "mae_ratio", "live MAE divided by persistence's on the same points", labels=window_labels
        )
        dm = GaugeMetricFamily(
            PREFIX + "dm_pvalue", "Diebold-Mariano p-value against persistence", labels=window_labels
        )
        coverage = GaugeMetricFamily(
            PREFIX + "coverage", "share of actual closes inside the range", labels=[*window_labels, "range"]
        )
        forecast_age = GaugeMetricFamily(
            PREFIX + "last_forecast_age_seconds", "seconds since the newest live forecast", labels=pair_labels
        )
        model_age = GaugeMetricFamily(
            PREFIX + "model_age_seconds", "seconds since the served model was trained", labels=pair_labels
        )
        failing = GaugeMetricFamily(
            PREFIX + "pair_failing", "1 when the pair's last round ended in an error", labels=pair_labels
        )
        offline = GaugeMetricFamily(
            PREFIX + "pair_offline", "1 when the pair's candles are the bundled sample", labels=pair_labels
        )
        served = GaugeMetricFamily(
            PREFIX + "served_model",
            "1 for the version the pair's model server answers with, and its kind (lstm, baseline)",
            labels=[*pair_labels, "version", "kind"],
        )
        server_up = GaugeMetricFamily(
            PREFIX + "server_up",
            "1 when the tracker's last ask reached the pair's model server and its model answered, 0 when the "
            "server was unreachable, timed out, had no model ready or failed",
            labels=pair_labels,
        )
        training_failures = GaugeMetricFamily(
            PREFIX + "training_failures",
            "trainer runs that failed in a row (the pair's status.lastTraining.failures; Kubernetes only)",
            labels=pair_labels,
        )
        newest_run = GaugeMetricFamily(
            PREFIX + "newest_run_age_seconds",
            "seconds since the pair's newest training run (its newest version in the store, promoted or not)",
            labels=pair_labels,
        )
        interval = GaugeMetricFamily(PREFIX + "interval_seconds", "the pair's candle interval", labels=pair_labels)
        period = GaugeMetricFamily(
            PREFIX + "retrain_period_seconds",
            "the longest wait between two runs of the pair's retraining schedule",
            labels=pair_labels,
        )
        for key, spec in sorted(dict(self.tracker.specs).items()):
            labels = key.split("/", 1)
            interval.add_metric(labels, interval_ms(spec.spec.interval) / 1000)
            period.add_metric(labels, self.retrain_period_s(spec.spec.schedule, now))
        for key, state in sorted(dict(self.tracker.pairs).items()):  # a copy: rounds change it meanwhile
            namespace, pair = key.split("/", 1)
            labels = [namespace, pair]
            failing.add_metric(labels, float(state.error is not None))
            offline.add_metric(labels, float(state.offline))
            if state.server_up is not None:
                server_up.add_metric(labels, float(state.server_up))
            if state.training_failures is not None:
                training_failures.add_metric(labels, state.training_failures)
            if state.newest_run is not None:
                ran = datetime.strptime(state.newest_run, VERSION_FORMAT).replace(tzinfo=UTC)
                newest_run.add_metric(labels, (now - ran).total_seconds())
            if (age := _age(now, state.model_created_at)) is not None:
                model_age.add_metric(labels, age)
            if state.model is not None and state.model.version:
                served.add_metric([*labels, state.model.version, state.model.kind or "unknown"], 1.0)
            summary = state.summary
            if summary is None:
                continue
            if (age := _age(now, summary.last_forecast_at)) is not None:
                forecast_age.add_metric(labels, age)
            for window in summary.windows:
                w = [*labels, window.window]
                made.add_metric(w, window.made)
                missed.add_metric(w, window.missed)
                if window.point is not None and window.point.rel_mae is not None:
                    ratio.add_metric(w, window.point.rel_mae)
                if window.point is not None and window.point.dm_pvalue is not None:
                    dm.add_metric(w, window.point.dm_pvalue)
                for cover in window.ranges.ranges if window.ranges else []:
                    coverage.add_metric([*w, f"{cover.nominal:g}"], cover.rate)
        rounds = GaugeMetricFamily(PREFIX + "round_seconds", "how long the last round over every pair took")
        decisions = self.decisions()
        if self.tracker.last_round is not None:
            rounds.add_metric([], self.tracker.last_round.seconds)
        yield from (made, missed, ratio, dm, coverage, forecast_age, model_age, failing, offline, served, rounds)
        yield from (server_up, training_failures, newest_run, interval, period)
        yield from decisions
        yield from self.after_fees()

    def summaries(self) -> Iterator[tuple[str, str, TrackSummary]]:
        """(namespace, pair, summary) of every pair with a summary, in key order: a copy, since rounds change them."""
        for key, state in sorted(dict(self.tracker.pairs).items()):
            if (summary := state.summary) is not None:
                namespace, pair = key.split("/", 1)
                yield namespace, pair, summary

    def after_fees(self) -> list[GaugeMetricFamily]:
        """Would following the served version since it went live have made money (makeusrich.track.value)."""
        labels = ["namespace", "pair", "rule"]
        returns = GaugeMetricFamily(
            PREFIX + "after_fees_log_return",
            "the rule's log return after fees since the version went live",
            labels=labels,
        )
        candles = GaugeMetricFamily(
            PREFIX + "after_fees_candles", "the live candles the rules were followed over", labels=labels[:2]
        )
        bounded = [*labels, "bound"]
        holding = GaugeMetricFamily(
            PREFIX + "after_fees_vs_holding",
            "how much more (below 0, less) the rule ends with than holding: estimate, and 95% low and high",
            labels=bounded,
        )
        twin = GaugeMetricFamily(
            PREFIX + "after_fees_vs_twin",
            "how much more the rule ends with than its baseline twin: estimate, and 95% low and high",
            labels=bounded,
        )
        for namespace, pair, summary in self.summaries():
            if summary.decision is None:
                continue
            metrics = summary.decision.metrics
            candles.add_metric([namespace, pair], metrics.rules["buy-and-hold"].candles)
            for rule, score in metrics.rules.items():
                returns.add_metric([namespace, pair, rule], score.total_log_return)
            for family, against in ((holding, metrics.against_holding), (twin, metrics.against_twin)):
                for rule, difference in against.items():
                    for bound, value in zip(("estimate", "low", "high"), difference.relative, strict=True):
                        family.add_metric([namespace, pair, rule, bound], value)
        return [returns, candles, holding, twin]

    def decisions(self) -> list[GaugeMetricFamily]:
        """The live decisions and the shadows of every pair (makeusrich.track.evidence)."""
        labels = ["namespace", "pair", "decision"]
        statistic = GaugeMetricFamily(
            PREFIX + "decision_evidence", "the decision's e-detector statistic", labels=labels
        )
        threshold = GaugeMetricFamily(
            PREFIX + "decision_threshold", "the statistic at which the decision acts", labels=labels
        )
        used = GaugeMetricFamily(PREFIX + "decision_forecasts", "scored forecasts the decision used", labels=labels)
        on = GaugeMetricFamily(PREFIX + "decision_on", "1 while the decision's alarm is on", labels=labels)
        shadow_labels = ["namespace", "pair", "role", "version"]
        mae = GaugeMetricFamily(
            PREFIX + "shadow_mae_ratio",
            "the served version's MAE over the shadow's, same origins",
            labels=shadow_labels,
        )
        pinball = GaugeMetricFamily(
            PREFIX + "shadow_pinball_ratio",
            "the served version's pinball loss over the shadow's, same origins",
            labels=shadow_labels,
        )
        for namespace, pair, summary in self.summaries():
            for d in summary.decisions:
                at = [namespace, pair, d.decision]
                statistic.add_metric(at, d.statistic)
                threshold.add_metric(at, d.threshold)
                used.add_metric(at, d.forecasts)
                on.add_metric(at, float(d.on))
            for shadow in summary.shadows:
                at = [namespace, pair, shadow.role, shadow.version]
                if shadow.mae_ratio is not None:
                    mae.add_metric(at, shadow.mae_ratio)
                if shadow.pinball_ratio is not None:
                    pinball.add_metric(at, shadow.pinball_ratio)
        return [statistic, threshold, used, on, mae, pinball]


def health(tracker: RoundLoop) -> tuple[int, dict[str, Any]]:
    """200 while rounds keep coming (the last one finished within two of the shortest interval, plus two
    minutes), 503 before the first round or when the loop is stuck. Pair errors are listed, not fatal."""
    report = tracker.last_round
    if report is None:
        return 503, {"status": "starting"}
    shortest = min((interval_ms(p.spec.interval) for p in tracker.specs.values()), default=3_600_000)
    late = (tracker.now() - report.finished).total_seconds() > 2 * shortest / 1000 + 120
    body = {
        "status": "stuck" if late else "ok",
        "lastRound": iso_z(report.finished),
        "pairs": len(report.pairs),
        "errors": {r.key: r.error for r in report.pairs if r.error},
        "offline": sorted(r.key for r in report.pairs if r.offline),
    }
    return (503 if late else 200), body


def serve_http(tracker: RoundLoop, host: str, port: int) -> ThreadingHTTPServer:
    """Start /metrics and /healthz in a daemon thread; the caller shuts the server down."""
    registry = CollectorRegistry()
    registry.register(TrackCollector(tracker))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                status, body = health(tracker)
                self._send(status, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"error": "not found: use /metrics or /healthz"}', "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="track-http", daemon=True).start()
    return server
