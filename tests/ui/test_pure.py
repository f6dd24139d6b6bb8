"""The dashboard's pure parts: number and time formats, skill verdicts, badges, forms, auth, kubeconfig, backtest."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from makeusrich.errors import CandleError, PairError
from makeusrich.market import CandleFeed, Source, clean_candles, close_moments, read_sample
from makeusrich.onnxrt import onnx_session
from makeusrich.operator import status as operator_status
from makeusrich.pair import Condition, CurrencyPairStatus, ModelChange, load_pair
from makeusrich.pair_sources import EmbeddedSource, record_from_resource
from makeusrich.store import Score, atomic_write
from makeusrich.trainer.features import prepare
from makeusrich.ui import auth
from makeusrich.ui.backtest import held_out_windows, score, split_range
from makeusrich.ui.badges import badges, matches, sort_states, staleness
from makeusrich.ui.card import PairState, Skill, skill_from_metrics, skill_from_status
from makeusrich.ui.card_html import card_html, sparkline
from makeusrich.ui.charts import backtest_chart, candle_chart
from makeusrich.ui.cli import read_password
from makeusrich.ui.format import (
    format_age,
    format_change,
    format_price,
    format_time,
    price_decimals,
    promotion_rules,
    training_line,
    verdict,
)
from makeusrich.ui.forms import initial_values, validate_form
from makeusrich.ui.overview import empty_hints
from makeusrich.ui.tables import change_rows, edge_sentence, range_rows, skill_rows, version_rows
from tests.fixtures.models import TrainedStore, small_pair

# --- numbers and times ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (43210.123, "43,210.12"),
        (1234567.891, "1,234,567.89"),
        (1.23456789, "1.23457"),
        (0.0123456789, "0.0123457"),
        (0.0000123456789, "0.00001235"),
        (None, "—"),
        (float("nan"), "—"),
    ],
)
def test_prices_get_separators_and_decimals_for_their_size(price: float | None, expected: str) -> None:
    assert format_price(price, price_decimals(price)) == expected


def test_changes_are_signed_with_more_decimals_when_small() -> None:
    assert format_change(0.00088) == "+0.088%"
    assert format_change(-0.0123) == "-1.23%"
    assert format_change(0.0) == "+0.000%"
    assert format_change(None) == "—"


def test_times_are_shown_in_the_viewers_zone() -> None:
    moment = "2022-06-15T01:00:00Z"
    assert format_time(moment, "Europe/Paris") == "2022-06-15 03:00 CEST"
    assert format_time(moment, "America/New_York") == "2022-06-14 21:00 EDT"
    assert format_time(moment, None) == "2022-06-15 01:00 UTC"
    assert format_time(moment, "Not/AZone") == "2022-06-15 01:00 UTC"  # a bad zone from a browser is not fatal
    assert format_time("not a time", "UTC") == "—"
    now = datetime(2022, 6, 15, 4, 0, tzinfo=UTC)
    assert format_age(moment, now) == "3 h ago"
    assert format_age("2022-06-10T01:00:00Z", now) == "5 days ago"
    assert format_age("2022-06-15T03:59:30Z", now) == "just now"
    opened = pd.Series([pd.Timestamp("2022-06-15", tz="UTC")])
    assert close_moments(opened, "4h").iloc[0] == pd.Timestamp("2022-06-15 04:00", tz="UTC")


# --- skill ----------------------------------------------------------------------------------------------------


def test_skill_reads_metadata_and_status_metrics_alike(trained_store_template: TrainedStore) -> None:
    metrics = trained_store_template.outcome.metadata.metrics
    from_metadata = skill_from_metrics(metrics)
    status_metrics = operator_status.model_metrics(trained_store_template.outcome.metadata)  # as the status holds them
    from_status = skill_from_status(status_metrics)
    assert from_metadata == from_status
    assert from_metadata.test is not None and from_metadata.test.rel_mae == metrics.test.model.rel_mae
    assert from_metadata.test.directional is not None
    assert from_metadata.test.directional.n == metrics.test.model.directional.n  # type: ignore[union-attr]
    assert skill_from_status(None) is None and skill_from_status({"other": 1}) is None
    old = {"test": {**metrics.test.model.model_dump(by_alias=False), "directional": None}}  # snake_case, as before
    assert skill_from_status(old).test.rel_mae == metrics.test.model.rel_mae  # type: ignore[union-attr]


def score_of(rel_mae: float, dm_pvalue: float | None = None) -> Score:
    """A model's score with only the numbers a view reads."""
    return Score(
        n=100, horizon=1, mae=None, rmse=None, rel_mae=rel_mae, rel_rmse=None, dm_pvalue=dm_pvalue,
        directional=None, mae_by_step=[],
    )  # fmt: skip


def test_verdict_claims_an_edge_only_when_it_is_significant() -> None:
    assert verdict(score_of(0.97, dm_pvalue=0.01)).text == "beats persistence"
    assert verdict(score_of(0.97, dm_pvalue=0.40)).text == "no clear edge over persistence"
    assert verdict(score_of(1.03, dm_pvalue=0.40)).text == "no better than persistence"
    assert verdict(score_of(1.03, dm_pvalue=0.01)).text == "worse than persistence"
    assert verdict(None).text == "skill not measured"
    assert verdict(score_of(1.0, dm_pvalue=1.0), "baseline").text == "persistence, by design"  # not a "loss"


def test_skill_table_lists_the_model_and_every_rule(trained_store_template: TrainedStore) -> None:
    rows = skill_rows(trained_store_template.outcome.metadata)
    assert [r.name for r in rows][:2] == ["LSTM (this model)", "Persistence (next = last close)"]
    assert len(rows) == 5 and rows[0].is_model
    assert rows[1].cells["test_ratio"] == "1.000" and rows[1].cells["test_p"] == "—"
    assert skill_rows(None) == []


def test_range_table_puts_the_model_beside_every_naive_range(trained_store_template: TrainedStore) -> None:
    meta = trained_store_template.outcome.metadata
    rows = range_rows(meta)
    assert [r.name for r in rows] == [
        "This model's quantiles",
        "EWMA volatility (RiskMetrics)",
        "EWMA of candle ranges",
        "HAR of candle ranges",
        "Climatology",
    ]
    test = meta.metrics.test.ranges
    assert test is not None
    widest = test.model.ranges[0]
    assert rows[0].cells["test_cov90"].startswith(f"{widest.rate:.1%} (")
    assert rows[1].cells["test_interval"] == rows[1].cells["test_pinball"] == "1.000"  # EWMA against itself
    assert rows[0].cells["test_pinball"] == f"{test.model.pinball / test.ewma.pinball:.3f}"
    assert test.har is not None and rows[3].cells["test_pinball"] == f"{test.har.pinball / test.ewma.pinball:.3f}"
    # A version measured before the range baselines existed shows the rows it has.
    older = test.model_copy(update={"ewma_range": None, "har": None})
    metrics = meta.metrics.model_copy(update={"test": meta.metrics.test.model_copy(update={"ranges": older})})
    old_rows = range_rows(meta.model_copy(update={"metrics": metrics}))
    assert [r.name for r in old_rows] == ["This model's quantiles", "EWMA volatility (RiskMetrics)", "Climatology"]
    assert range_rows(None) == []


def test_the_edge_sentence_says_a_loss_as_plainly_as_a_win(trained_store_template: TrainedStore) -> None:
    meta = trained_store_template.outcome.metadata
    test = meta.metrics.test

    def with_point(ratio: float, p: float) -> Any:
        point = test.model.model_copy(update={"rel_mae": ratio, "dm_pvalue": p})
        metrics = meta.metrics.model_copy(update={"test": test.model_copy(update={"model": point})})
        return meta.model_copy(update={"metrics": metrics})

    losing = edge_sentence(with_point(1.0125, 0.03))
    assert losing.tone == "negative"
    assert losing.text.startswith(
        "No edge on the price: on the test split its error is 1.25% above persistence's (DM p=0.030)."
    )
    assert "range held" in losing.text and "than climatology's" in losing.text
    assert "0.50% below persistence's, which may be noise" in edge_sentence(with_point(0.995, 0.4)).text
    assert edge_sentence(with_point(0.98, 0.001)).tone == "positive"
    assert edge_sentence(None).text == "No model has been measured yet."
    baseline = edge_sentence(with_point(1.0, 1.0).model_copy(update={"kind": "baseline"}))
    assert (
        baseline.tone == "neutral" and "claims no edge on the price" in baseline.text and "range held" in baseline.text
    )


def test_the_pair_page_says_how_a_version_was_made_and_which_rules_promote(
    trained_store_template: TrainedStore,
) -> None:
    meta = trained_store_template.outcome.metadata
    assert training_line(meta).startswith(f"{meta.training.epochs} epochs (best {meta.training.best_epoch})")
    assert "from the weights" not in training_line(meta)  # the pair's first LSTM trained from the seed
    warm = meta.model_copy(update={"training": meta.training.model_copy(update={"warm_from": "20220101T000000Z"})})
    assert training_line(warm).endswith("candles, from the weights of 20220101T000000Z")
    first = trained_store_template.outcome.first
    assert first is not None and first.metadata.kind == "baseline"
    assert training_line(first.metadata).startswith("baseline fitted (") and "epochs" not in training_line(
        first.metadata
    )
    assert first.metadata.baseline is not None
    har = first.metadata.model_copy(
        update={"baseline": first.metadata.baseline.model_copy(update={"estimator": "har"})}
    )
    assert training_line(har).startswith("baseline fitted (HAR volatility)")
    rules = promotion_rules(small_pair("x", promotion={"maxRelativeMAE": 0.99}).spec.promotion)
    assert rules.startswith("test MAE ≤ 0.99 times persistence's;") and "not significantly worse" in rules


def test_the_price_chart_opens_the_range_band_at_the_last_close() -> None:
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    candles = frame.tail(10).reset_index(drop=True)
    last = float(candles["close"].iloc[-1])
    times = [datetime(2022, 6, 15, 2, tzinfo=UTC)]
    chart = candle_chart(candles, times, [last * 1.001], "UTC", 2, "1h", [(last * 0.99, last * 1.01, 0.9)])
    low, width = (series["data"] for series in chart["series"] if series.get("stack") == "90% range")
    assert low[:9] == [None] * 9 and low[9] == pytest.approx(last) and width[9] == 0  # opens at the last close
    assert low[10] == pytest.approx(last * 0.99) and width[10] == pytest.approx(last * 0.02)
    plain = candle_chart(candles, times, [last], "UTC", 2, "1h")
    assert not [series for series in plain["series"] if series.get("stack")]  # no quantiles, no band


def test_a_forecast_is_stale_when_candles_or_training_stop() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    fresh = dict(forecast=(1.0,), last_close_time=now - timedelta(minutes=30), trained_at="2026-12-01T00:10:00Z")
    assert staleness(state(**fresh), now) is None
    old_candle = state(**{**fresh, "last_close_time": now - timedelta(hours=3)})
    assert staleness(old_candle, now) == "stale forecast: its last candle closed 3 h ago, over two 1h intervals"
    assert "Stale" in [b.text for b in badges(old_candle, now)]
    old_model = state(**{**fresh, "trained_at": "2026-11-27T00:10:00Z"})  # daily schedule, 4 days on
    assert "its model was trained 4 days ago, over three schedule periods" in (staleness(old_model, now) or "")
    suspended = state(**{**fresh, "trained_at": "2026-11-27T00:10:00Z"}, spec={"suspend": True})
    assert staleness(suspended, now) is None  # training stopped on purpose: the model's age is no surprise


def test_version_rows_mark_served_promoted_and_pinned(trained_store_template: TrainedStore) -> None:
    meta = trained_store_template.outcome.metadata
    older = meta.model_copy(
        update={"promotion": meta.promotion.model_copy(update={"promoted": False, "reason": "above the bar"})}
    )
    rows = version_rows(
        {"20260101T000000Z": older, "20270101T000000Z": meta},
        promoted="20270101T000000Z",
        served="20270101T000000Z",
        pinned="20260101T000000Z",
        tz="UTC",
    )
    assert [r.version for r in rows] == ["20270101T000000Z", "20260101T000000Z"]
    assert rows[0].marks == ("served", "promoted") and rows[1].marks == ("pinned",)
    assert not rows[1].promoted and rows[1].reason == "above the bar"


# --- badges, filter, sort -------------------------------------------------------------------------------------


def state(name: str = "btc-usdt", **fields: object) -> PairState:
    pair = small_pair(name, **fields.pop("spec", {}))  # type: ignore[arg-type]
    return PairState(f"default/{name}", name, "default", pair, **fields)  # type: ignore[arg-type]


def test_badges_put_problems_first_and_say_why() -> None:
    down = badges(state(serving_error="unreachable", promoted_version="20260101T000000Z"))
    assert [b.text for b in down] == ["Serving down"]
    assert down[0].tooltip == "unreachable"
    ok = badges(state(serving_ready=True, promoted_version="v", served_version="v"))
    assert [b.text for b in ok] == ["Ready"]
    unpromoted = badges(
        state(
            promoted_version="20260101T000000Z",
            served_version="20260101T000000Z",
            newest_version="20260102T000000Z",
            newest_promoted=False,
            newest_reason="validation MAE is 1.02 of persistence's",
            serving_ready=True,
        )
    )
    assert [b.text for b in unpromoted] == ["Not promoted", "Ready"]
    assert "20260102T000000Z: validation MAE is 1.02" in unpromoted[0].tooltip
    assert [b.text for b in badges(state())] == ["No model"]
    pinned = badges(state(spec={"suspend": True, "serving": {"pinnedVersion": "20260101T000000Z"}}))
    assert [b.text for b in pinned] == ["No model", "Pinned", "Suspended"]
    invalid = PairState("default/x", "x", "default", None, problem="bad file")
    assert [(b.text, b.tooltip) for b in badges(invalid)] == [("Invalid", "bad file")]
    # A card with any problem does not say Ready, even though its model answers.
    for problem in ({"store_error": "model store: unsupported store URL 's4://bucket'"}, {"forecast_error": "x"}):
        troubled = state(serving_ready=True, promoted_version="v", served_version="v", **problem)
        assert "Ready" not in [b.text for b in badges(troubled)], problem


def test_a_version_served_again_by_a_rollback_wears_a_badge_while_it_serves() -> None:
    back = ModelChange.model_validate(
        {"version": "v1", "from": "v2", "action": "rolled-back", "by": "makeusrich track", "at": "T", "reason": "worse"}
    )
    ahead = ModelChange.model_validate({"version": "v3", "from": "v1", "action": "promoted", "by": "t", "at": "U"})
    rolled = badges(state(serving_ready=True, promoted_version="v1", served_version="v1", changes=(back,)))
    assert [(b.text, b.tone) for b in rolled] == [("Rolled back", "warning"), ("Ready", "positive")]
    assert rolled[0].tooltip == "version v2 was rolled back to v1 by makeusrich track (T): worse"
    newer = state(serving_ready=True, promoted_version="v3", served_version="v3", changes=(ahead, back))
    assert [b.text for b in badges(newer)] == ["Ready"]  # a newer promotion ends it
    assert change_rows((back,), "UTC")[0] == {
        "at": "—",
        "action": "rolled back",
        "change": "v2 → v1",
        "by": "makeusrich track",
        "reason": "worse",
    }


def test_empty_overview_says_how_to_add_a_pair_and_how_to_enable_editing() -> None:
    embedded = EmbeddedSource("my-pairs", None, "http://127.0.0.1:8080")
    off = empty_hints(embedded, login_configured=False, logged_in=False)
    assert off[0].startswith("Add a CurrencyPair file to my-pairs")
    assert "set MAKEUSRICH_UI_PASSWORD_HASH" in off[1] and "makeusrich ui --hash-password" in off[1]
    assert empty_hints(embedded, login_configured=True, logged_in=False)[1] == "Or log in to create one here."
    assert empty_hints(embedded, login_configured=True, logged_in=True)[1] == "Or create one here with New pair."


def test_status_conditions_become_badges() -> None:
    now = "2026-01-01T00:00:00Z"
    status = CurrencyPairStatus(
        conditions=[
            Condition(type="Trained", status="False", reason="TrainingFailed", message="OOM", last_transition_time=now),
            Condition(type="Ready", status="False", reason="Deploying", message="rolling", last_transition_time=now),
        ]
    )
    shown = badges(state(status=status, serving_ready=False, promoted_version="v"))
    assert [(b.text, b.tooltip) for b in shown] == [("Not ready", "rolling"), ("Training failed", "OOM")]


def test_filter_and_sort() -> None:
    skill = Skill(validation=None, test=score_of(0.99))
    a = state("btc-usdt", last_close=100.0, forecast=(101.0,), skill=skill, promoted_version="v", serving_ready=True)
    b = state("eth-usdt", spec={"currency": "eth"}, last_close=100.0, forecast=(99.0,), serving_error="down")
    assert matches(a, "BTC/USDT") and matches(a, "btcusdt") and matches(a, "btc usdt") and not matches(a, "eth")
    assert [s.name for s in sort_states([b, a], "name")] == ["btc-usdt", "eth-usdt"]
    assert [s.name for s in sort_states([b, a], "change")] == ["btc-usdt", "eth-usdt"]
    assert [s.name for s in sort_states([a, b], "problems")] == ["eth-usdt", "btc-usdt"]
    assert [s.name for s in sort_states([b, a], "skill")] == ["btc-usdt", "eth-usdt"]


def test_card_html_shows_the_numbers_and_escapes_what_it_did_not_write() -> None:
    ok = state(
        last_close=22029.16,
        last_close_time=datetime(2022, 6, 15, 1, tzinfo=UTC),
        closes=(22000.0, 22029.16),
        forecast=(22048.56,),
        forecast_times=(datetime(2022, 6, 15, 2, tzinfo=UTC),),
        promoted_version="20261126T161056Z",
        served_version="20261126T161056Z",
        trained_at="2022-06-15T00:00:00Z",
        skill=Skill(validation=score_of(1.08), test=score_of(1.0606, dm_pvalue=0.001)),
        serving_ready=True,
    )
    shown = card_html(ok, "Europe/Paris", now=datetime(2022, 6, 15, 3, tzinfo=UTC))
    for text in (
        'href="/pair/default/btc-usdt"',
        "BTC/USDT",
        "22,029.16",
        "last close · 2022-06-15 03:00 CEST",
        "22,048.56",
        "2022-06-15 04:00 CEST",  # the forecast candle's close
        "+0.088%",
        "worse than persistence",
        "1.061",
        "1.080",
        "model 20261126T161056Z · trained 3 h ago",
        ">Ready<",
    ):
        assert text in shown, text
    assert "⚠" not in shown
    hostile = state(serving_error='<img src=x onerror="alert(1)">', promoted_version="v")
    shown = card_html(hostile, "UTC")
    assert "<img" not in shown and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in shown
    assert "Loading" in card_html(state(loading=True), "UTC")


def test_sparkline_draws_history_and_forecast() -> None:
    svg = sparkline([1.0, 2.0, 3.0], [4.0])
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "#16a34a" in svg
    assert sparkline([1.0, 2.0, 3.0], [0.5]).count("#dc2626") == 1
    assert "no price history" in sparkline([])


# --- the form -------------------------------------------------------------------------------------------------


def test_form_round_trips_a_pair_and_reports_errors_per_field() -> None:
    pair = small_pair(serving={"pinnedVersion": "20260101T000000Z"})
    values = initial_values(pair)
    validated, errors = validate_form(values)
    assert errors == {} and validated == pair
    values["spec.serving.pinnedVersion"] = ""  # empty means "not pinned"
    values["spec.currency"] = " ETH "
    validated, errors = validate_form(values)
    assert validated is not None and validated.spec.serving.pinned_version is None
    assert validated.spec.currency == "eth"
    values.update({"metadata.name": "Bad_Name", "spec.model.window": 3, "spec.model.layers": None})
    validated, errors = validate_form(values)
    assert validated is None
    assert errors["metadata.name"].startswith("use lower-case letters")
    assert errors["spec.model.window"] == "Input should be greater than or equal to 8"
    assert errors["spec.model.layers"] == "required"
    new = initial_values(None, "team-a")
    assert new["metadata.namespace"] == "team-a" and new["spec.model.window"] == 120 and new["spec.currency"] == ""


# --- auth -----------------------------------------------------------------------------------------------------


def test_password_hashes_are_salted_and_checked_in_constant_time() -> None:
    first, second = auth.hash_password("hunter22", n=1024), auth.hash_password("hunter22", n=1024)
    assert first != second and first.startswith("scrypt$1024$8$5$")
    assert auth.verify_password("hunter22", first) and not auth.verify_password("hunter23", first)
    with pytest.raises(auth.AuthError, match="not a hash made by"):
        auth.verify_password("x", "plain-text")
    with pytest.raises(auth.AuthError):
        auth.hash_password("")


def test_auth_comes_from_the_environment() -> None:
    assert not auth.auth_from_env({}).enabled
    stored = auth.hash_password("hunter22", n=1024)
    configured = auth.auth_from_env({auth.HASH_ENV: stored, auth.SECRET_ENV: "s"})
    assert configured.enabled and configured.password_hash == stored and configured.storage_secret == "s"
    plain = auth.auth_from_env({auth.PASSWORD_ENV: "hunter22"})
    assert plain.password_hash is not None and auth.verify_password("hunter22", plain.password_hash)
    assert not plain.secret_from_env and len(plain.storage_secret) >= 32
    with pytest.raises(auth.AuthError):
        auth.auth_from_env({auth.HASH_ENV: "scrypt$3$8$1$AA==$AA=="})  # n is not a power of two


def test_failed_logins_are_throttled_per_client_with_growing_waits() -> None:
    now = [0.0]
    throttle = auth.Throttle(free=3, base=1.0, ceiling=60.0, clock=lambda: now[0])
    for _ in range(3):  # a few typos go through at once
        assert throttle.begin("10.0.0.1") == 0
        throttle.finished("10.0.0.1", ok=False)
    waits = []
    for _ in range(8):
        assert throttle.begin("10.0.0.1") == 0
        throttle.finished("10.0.0.1", ok=False)
        waits.append(throttle.begin("10.0.0.1"))  # what the next attempt must wait
        now[0] += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert throttle.begin("10.0.0.2") == 0  # another client is not locked out by the first one's failures
    throttle.finished("10.0.0.2", ok=True)
    assert throttle.begin("10.0.0.1") == 0
    throttle.finished("10.0.0.1", ok=True)  # a success forgets the client
    assert "10.0.0.1" not in throttle.clients


def test_concurrent_login_attempts_get_one_check() -> None:
    """14 tabs at once: the decision is taken before the password check, so only one attempt is checked."""
    throttle = auth.Throttle(free=3, clock=lambda: 0.0)
    decisions = [throttle.begin("192.0.2.7") for _ in range(14)]
    assert decisions[0] == 0 and all(wait > 0 for wait in decisions[1:])
    throttle.finished("192.0.2.7", ok=False)
    assert throttle.clients["192.0.2.7"].failures == 1


def test_the_throttle_forgets_old_clients_beyond_its_bound() -> None:
    throttle = auth.Throttle(max_clients=100, clock=lambda: 0.0)
    for i in range(1000):
        throttle.begin(f"client-{i}")
    assert len(throttle.clients) == 100 and "client-999" in throttle.clients


def test_password_is_read_from_a_pipe() -> None:
    assert read_password(io.StringIO("s3cret pass\nignored\n")) == "s3cret pass"


# --- sources --------------------------------------------------------------------------------------------------


async def test_embedded_source_lists_writes_and_deletes_pair_files(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    source = EmbeddedSource(folder, None, "http://127.0.0.1:8080")
    assert await source.list_pairs() == []  # a missing folder is an empty one
    await source.save(small_pair("btc-usdt"), create=True)
    (folder / "broken.yaml").write_text("kind: CurrencyPair\nmetadata: {name: broken}\nspec: {currency: b}\n")
    (folder / "copy.yaml").write_text((folder / "btc-usdt.yaml").read_text())
    records = {r.path.name if r.path else "": r for r in await source.list_pairs()}
    assert records["btc-usdt.yaml"].pair == small_pair("btc-usdt")
    assert records["btc-usdt.yaml"].serving_url == "http://127.0.0.1:8080"
    assert "spec.currency" in str(records["broken.yaml"].problem)
    assert "declares default/btc-usdt again" in str(records["copy.yaml"].problem)
    with pytest.raises(PairError, match="already exists"):
        await source.save(small_pair("btc-usdt"), create=True)
    edited = small_pair("btc-usdt", suspend=True)
    await source.save(edited, create=False, previous=records["btc-usdt.yaml"])
    assert load_pair(folder / "btc-usdt.yaml") == edited
    await source.delete(records["btc-usdt.yaml"])
    assert not (folder / "btc-usdt.yaml").exists()
    with pytest.raises(PairError, match="no longer exists"):
        await source.save(edited, create=False, previous=records["btc-usdt.yaml"])
    assert sorted(p.name for p in folder.iterdir()) == ["broken.yaml", "copy.yaml"]  # no temporary files left


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "pair.yaml"
    target.write_text("old")

    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["pair.yaml"]


def test_resource_with_an_invalid_spec_or_status_still_shows() -> None:
    resource = {
        "metadata": {"name": "btc-usdt", "namespace": "team", "resourceVersion": "7"},
        "spec": {"currency": "btc", "compare": "usdt"},
        "status": {"serving": {"url": "http://from-status"}, "conditions": [{"type": "Nope"}]},
    }
    record = record_from_resource(resource, None)
    assert record.pair is not None and record.pair.namespace == "team" and record.resource_version == "7"
    assert record.status is None  # an unreadable status is dropped, the pair is kept
    isvc = {"status": {"url": "http://external", "address": {"url": "http://btc-usdt.team.svc"}}}
    assert record_from_resource(resource, isvc).serving_url == "http://btc-usdt.team.svc"
    good_status = {**resource, "status": {"serving": {"url": "http://from-status"}}}
    assert record_from_resource(good_status, None).serving_url == "http://from-status"
    bad = record_from_resource({**resource, "spec": {"currency": "B"}}, None)
    assert bad.pair is None and "spec.currency" in str(bad.problem)


# --- candles and the backtest -----------------------------------------------------------------------------------


def test_file_feed_rereads_a_file_that_grew(tmp_path: Path) -> None:
    rows = "open_time,open,high,low,close,volume\n"
    start = 1655251200000
    lines = [f"{start + i * 3_600_000},1,2,0.5,{1 + i / 10},3" for i in range(5)]
    path = tmp_path / "c.csv"
    path.write_text(rows + "\n".join(lines[:4]) + "\n")
    feed = CandleFeed(Source.parse(f"file:{path}"))
    spec = small_pair().spec
    assert list(feed.recent(spec, 2)["close"]) == [1.2, 1.3]
    path.write_text(rows + "\n".join(lines) + "\n")
    assert list(feed.recent(spec, 2)["close"]) == [1.3, 1.4]
    begin = pd.Timestamp(start, unit="ms", tz="UTC")
    assert len(feed.between(spec, begin, begin + pd.Timedelta(hours=1))) == 2
    with pytest.raises(CandleError):
        CandleFeed(Source.parse("sample")).recent(small_pair(currency="eth").spec, 2)


def test_held_out_windows_are_the_trainers_test_split(trained_store_template: TrainedStore) -> None:
    """Rebuilt from the same candles, the windows and their targets are exactly those the trainer scored."""
    meta = trained_store_template.outcome.metadata
    spec = trained_store_template.pair.spec
    frame, _ = clean_candles(read_sample(spec.symbol, spec.interval), spec.interval)
    first, last, window, horizon, _ = split_range(meta)
    part = frame[(frame["open_time"] >= first) & (frame["open_time"] <= last)].reset_index(drop=True)
    test_from = pd.Timestamp(meta.data.test_from) - pd.Timedelta(hours=1)  # recorded as a close: the open
    held = held_out_windows(part, test_from, window, horizon, 3_600_000)
    whole = frame[frame["open_time"] >= pd.Timestamp(meta.data.from_)]
    whole = whole[whole["open_time"] <= last].reset_index(drop=True)
    data = prepare(whole, window, horizon, 3_600_000)
    assert len(held.windows) == len(data.split.test) == meta.data.windows["test"]
    np.testing.assert_array_equal(held.windows, data.raw_windows(data.split.test).astype(np.float32))
    np.testing.assert_allclose(held.actual, data.actual_prices(data.split.test))
    perfect = score("v", held, held.actual, 1.0, horizon)
    assert perfect.mae == 0 and perfect.ratio == 0 and perfect.agrees is False
    naive = score("v", held, held.last_close, 1.0, horizon)
    assert naive.ratio == pytest.approx(1.0) and naive.agrees
    assert naive.persistence_mae == pytest.approx(meta.metrics.test.rules.persistence.mae)
    with pytest.raises(CandleError, match="no complete test window"):
        held_out_windows(part, last + pd.Timedelta(hours=1), window, horizon, 3_600_000)
    # the stored file's ranges over the same windows hold the recorded share of test closes
    session = onnx_session(trained_store_template.store().read_model(trained_store_template.version))
    forecast, quantiles = session.run(None, {"candles": held.windows})
    ranged = score("v", held, forecast, meta.metrics.test.model.rel_mae, horizon, quantiles, meta)
    assert ranged.agrees and ranged.nominal == 0.9 and len(ranged.low) == len(held.windows)
    assert ranged.coverage == pytest.approx(ranged.recorded_coverage)
    # and the decision rules on them after fees are those recorded at training
    assert ranged.decisions is not None and ranged.recorded_decision is not None and ranged.decision_agrees
    assert naive.decisions is None  # no quantiles, no range to size a position by
    chart = backtest_chart(ranged, "UTC", 2, "1h")
    shaded = [series for series in chart["series"] if series.get("stack") == "90% range"]
    assert len(shaded) == 2 and shaded[1]["data"][0] == pytest.approx(ranged.high[0] - ranged.low[0])
