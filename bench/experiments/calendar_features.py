"""Do hour-of-day and day-of-week features help the ranges? Crypto volatility has a daily and a weekly rhythm
(the US and Asian sessions, quiet weekends), and the model sees only price ratios and volume changes today.

Two arms, same candles (the pair's lookback, bundled sample), seed and settings; the second appends sin/cos of
the hour of day and of the day of week of each candle's close to its feature row. Judged on validation only,
as the trainer decides (pinball loss before calibration, and coverage, interval score and pinball after it);
the test split is printed beside it for information, never used to choose.

The served model's input is raw candles without times (contract 2), so adopting calendar features would mean a
second input, the last candle's close time; this script measures whether that change would be worth making.

An experiment (answered: not adopted, see its results file), kept so that the answer can be checked again.

    python bench/experiments/calendar_features.py [-f PAIR.yaml] [--lookback-days 365] [--max-epochs N] [--write]

`--write` records the table, the command, the commit and the date in bench/results/experiments/calendar_features.md.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import _harness
import numpy as np
import torch

import makeusrich.trainer.model as model_module
from makeusrich.market import Source, close_moments, interval_ms, load_candles
from makeusrich.scoring import ranges
from makeusrich.trainer.evaluation import Volatility, log_returns, naive_ranges
from makeusrich.trainer.features import N_FEATURES, Prepared, prepare
from makeusrich.trainer.train import configure_threads, predict_standardised, train


def with_calendar(data: Prepared, interval: str) -> Prepared:
    """The same data with four calendar columns per feature row (row r describes candle r + 1)."""
    closes = close_moments(data.open_time, interval).iloc[1:]
    hour = closes.dt.hour.to_numpy() + closes.dt.minute.to_numpy() / 60
    day = closes.dt.dayofweek.to_numpy() + hour / 24
    calendar = np.stack(
        [
            np.sin(2 * np.pi * hour / 24),
            np.cos(2 * np.pi * hour / 24),
            np.sin(2 * np.pi * day / 7),
            np.cos(2 * np.pi * day / 7),
        ],
        axis=1,
    ).astype(np.float32)
    return replace(data, features=np.concatenate([data.features, calendar], axis=1))


def scored(data: Prepared, core: torch.nn.Module, levels: list[float], step_ms: int) -> dict[str, float]:
    """Validation and test numbers of one arm, in log returns, with margins fitted on validation."""
    cpu = torch.device("cpu")
    out: dict[str, float] = {}
    val = data.split.validation
    raw_val = predict_standardised(core, data, val, cpu)  # type: ignore[arg-type]
    out["validation pinball (before calibration)"] = ranges.pinball_loss(
        data.targets[val].reshape(-1), raw_val.reshape(-1, len(levels)), levels
    )
    margins = ranges.conformal_margins(data.targets[val], raw_val, levels)
    volatility = Volatility.of(data.ohlcv, data.split.train, step_ms)
    sign = np.where(np.arange(len(levels)) < levels.index(0.5), -1.0, 1.0)
    for name, origins in (("validation", val), ("test", data.split.test)):
        q_std = predict_standardised(core, data, origins, cpu) + sign * margins  # type: ignore[arg-type]
        q = data.log_returns(q_std, origins)
        y = log_returns(data.actual_prices(origins), data.last_close(origins))
        ewma = naive_ranges(data, origins, levels, volatility)["ewma"]
        model, base = ranges.range_score(y, np.sort(q, axis=2), levels), ranges.range_score(y, ewma, levels)
        out[f"{name} 90% coverage"] = model.ranges[0].rate
        out[f"{name} interval score / EWMA"] = model.ranges[0].interval_score / base.ranges[0].interval_score
        out[f"{name} pinball / EWMA"] = model.pinball / base.pinball
        last, actual = data.last_close(origins), data.actual_prices(origins)[:, 0]
        forecast = last * np.exp(q[:, 0, levels.index(0.5)])
        out[f"{name} MAE / persistence"] = float(np.mean(np.abs(forecast - actual)) / np.mean(np.abs(last - actual)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-f", "--file", type=Path, default=_harness.EXAMPLE_PAIR)
    _harness.training_arguments(parser, 365, "what the recorded results used")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    configure_threads()
    pair = _harness.example_pair(args.lookback_days, args.max_epochs, args.file)
    spec = pair.spec
    frame = load_candles(spec, Source("sample")).frame
    base = prepare(frame, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
    levels = spec.model.quantiles
    results: dict[str, dict[str, float]] = {}
    for name, data, width in (
        ("price, volume and range (served today)", base, N_FEATURES),
        ("+ hour of day, day of week", with_calendar(base, spec.interval), N_FEATURES + 4),
    ):
        model_module.N_FEATURES = width  # the LSTM's input width; an experiment, not the trainer's code path
        result = train(data, spec.model, progress=None)
        results[name] = {**scored(data, result.core, levels, interval_ms(spec.interval)), "epochs": len(result.epochs)}
    model_module.N_FEATURES = N_FEATURES
    keys = list(next(iter(results.values())))
    rows = [[key, *(f"{r[key]:.4f}" if key != "epochs" else f"{r[key]:.0f}" for r in results.values())] for key in keys]
    run.finish(
        _harness.table(["metric", *results], rows),
        title="Calendar features: do they help?",
        settings={"pair": args.file, **_harness.model_settings(pair)},
        versions=("torch",),
        notes=[
            "The bundled BTC/USDT sample, default model settings. Decide on the validation rows; the test rows "
            "are for information.",
        ],
    )


if __name__ == "__main__":
    main()
