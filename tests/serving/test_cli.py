"""`makeusrich serve` and `makeusrich predict` as a user runs them: real subprocesses, exit codes, output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from makeusrich.market import Source, load_candles
from makeusrich.pair import pair_document
from makeusrich.serving.cli import count_gaps, describe_age, format_forecast, lookback_days_for
from makeusrich.v2client import candle_array
from tests.fixtures.model_server import ROOT, RunningServer, free_port
from tests.fixtures.models import small_pair
from tests.fixtures.shell import makeusrich
from tests.serving.helpers import reference_outputs

LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]


def pair_file(tmp_path: Path, **spec: object) -> Path:
    path = tmp_path / "btc-usdt.yaml"
    path.write_text(yaml.safe_dump(pair_document(small_pair(**spec))))
    return path


@pytest.mark.parametrize("command", ["serve", "predict"])
def test_help(command: str) -> None:
    result = makeusrich(command, "--help")
    assert result.returncode == 0 and f"usage: makeusrich {command}" in result.stdout


def test_predict_never_takes_another_namespace_s_model_for_the_pair(
    model_server: RunningServer, tmp_path: Path
) -> None:
    """A server of one namespace lists plain names: a pair of another namespace with the same name is refused, not
    answered with the other pair's forecast (the server says whose model it serves)."""
    path = tmp_path / "btc-usdt.yaml"
    path.write_text(yaml.safe_dump(pair_document(small_pair(namespace="team-a"))))
    result = makeusrich("predict", "-f", str(path), "--source", "sample", "--url", model_server.url)
    assert result.returncode == 1
    assert "is the pair btc-usdt of namespace default, not of team-a" in result.stderr, result.stderr


def test_predict_prints_the_served_forecast_for_the_latest_candles(model_server: RunningServer, tmp_path: Path) -> None:
    assert model_server.store is not None
    path = pair_file(tmp_path)
    result = makeusrich("predict", "-f", str(path), "--source", "sample", "--url", model_server.url, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    pair = small_pair()
    spec = pair.spec.model_copy(update={"lookback_days": lookback_days_for(24, "1h")})
    frame = load_candles(spec, Source("sample")).frame
    model = model_server.store.store().read_model(model_server.store.version)
    answer = reference_outputs(model, candle_array(frame, 24))
    expected, quantiles = answer["forecast"], answer["quantiles"][0, 0]
    # Times are candle closes: the bundled data's last candle opens at 00:00 and closes at 01:00.
    assert document["pair"] == "btc-usdt" and document["lastCloseTime"] == "2022-06-15T01:00:00Z"
    meta = model_server.store.store().metadata(model_server.store.version)
    assert document["modelCreatedAt"] == meta["createdAt"] and document["quantileLevels"] == LEVELS
    (row,) = document["forecast"]
    assert row["closeTime"] == "2022-06-15T02:00:00Z" and row["model_version"] == model_server.store.version
    assert row["close"] == float(expected[0, 0]) and row["last_close"] == frame["close"].iloc[-1]
    assert [row[f"q{level}"] for level in LEVELS] == quantiles.tolist()

    forecast = pd.DataFrame(document["forecast"]).assign(close_time=lambda f: pd.to_datetime(f["closeTime"]))
    text = format_forecast("btc-usdt", "BTCUSDT", "1h", forecast, pd.Timestamp("2022-06-15 01:00", tz="UTC"), 7300)
    assert text.splitlines()[0] == (
        f"btc-usdt (BTCUSDT 1h), model version {model_server.store.version} (trained 2 h ago): "
        f"last close {frame['close'].iloc[-1]:,.2f} at 2022-06-15 01:00 UTC"
    )
    assert text.splitlines()[1].startswith("close at (UTC)")
    line = text.splitlines()[2]
    assert line.startswith("2022-06-15 02:00") and f"{float(expected[0, 0]):,.2f}" in line
    assert line.endswith(
        f"range 50%: {quantiles[1]:,.2f} to {quantiles[3]:,.2f}; 90%: {quantiles[0]:,.2f} to {quantiles[4]:,.2f}"
    )

    printed = makeusrich("predict", "-f", str(path), "--source", "sample", "--url", model_server.url)
    assert printed.returncode == 0, printed.stderr
    assert re.search(r"LSTM version \S+ \(trained \d+ (s|min|h|days) ago\)", printed.stdout), printed.stdout
    assert line.split("range ")[1] in printed.stdout


def test_predict_over_grpc_prints_what_rest_prints(model_server: RunningServer, tmp_path: Path) -> None:
    path = str(pair_file(tmp_path))
    over = {url: makeusrich("predict", "-f", path, "--source", "sample", "--url", url, "--json")
            for url in (model_server.url, model_server.grpc_url)}  # fmt: skip
    rest, grpc = (json.loads(result.stdout) for result in over.values())
    assert grpc == rest and grpc["quantileLevels"] == LEVELS and grpc["modelKind"] == "lstm"


def test_predict_with_a_model_from_before_ranges(single_output_server: RunningServer, tmp_path: Path) -> None:
    result = makeusrich(
        "predict", "-f", str(pair_file(tmp_path)), "--source", "sample", "--url", single_output_server.url
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "range" not in result.stdout and lines[2].startswith("2022-06-15 02:00") and lines[2].endswith("%")


def test_ages_read_as_people_say_them() -> None:
    assert [describe_age(s) for s in (0, 59, 119, 120, 7199, 7200, 172_799, 172_800, 10**7)] == [
        "0 s", "59 s", "119 s", "2 min", "119 min", "2 h", "47 h", "2 days", "115 days"
    ]  # fmt: skip


def test_predict_with_no_server_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = makeusrich("predict", "-f", str(pair_file(tmp_path)), "--source", "sample", "--url", url)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"makeusrich predict: the model server at {url} is unreachable")
    )


def test_predict_refuses_a_pair_whose_interval_differs(model_server: RunningServer, tmp_path: Path) -> None:
    result = makeusrich("predict", "-f", str(pair_file(tmp_path, interval="4h")), "--url", model_server.url)
    assert result.returncode == 1
    assert "forecasts 1h candles but" in result.stderr and "says 4h" in result.stderr


def test_predict_refuses_a_pair_whose_horizon_differs(model_server: RunningServer, tmp_path: Path) -> None:
    path = pair_file(tmp_path, model={"window": 24, "horizon": 3})
    result = makeusrich("predict", "-f", str(path), "--source", "sample", "--url", model_server.url)
    assert result.returncode == 1
    assert "forecasts 1 candle(s) ahead but" in result.stderr and "says horizon 3" in result.stderr


def test_serve_checks_the_pair_names_it_is_given() -> None:
    result = makeusrich("serve", "--pairs", "btc-usdt,../../etc", "--port", "0")
    assert result.returncode == 1
    expected = "makeusrich serve: --pairs (or MAKEUSRICH_SERVE_PAIRS): '../../etc' is not a pair name (like btc-usdt)"
    assert result.stderr.strip() == expected


def test_lookback_covers_one_window_and_gaps_are_counted() -> None:
    assert lookback_days_for(24, "1h") == 3 and lookback_days_for(120, "1d") == 123
    times = pd.Series(pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00"], utc=True))
    assert count_gaps(times, "1h") == 1 and count_gaps(times.iloc[:2], "1h") == 0


def test_importing_the_server_leaves_our_command_line_to_us() -> None:
    """kserve.model_server parses sys.argv when imported and exits on a value it cannot read."""
    code = (
        "import sys; sys.argv = ['makeusrich', 'serve', '--http_port', 'eighty', '--workers', '9'];"
        "import makeusrich.serving.server; import kserve.model_server as m;"
        "print(m.args.http_port, m.args.workers, sys.argv[2:])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "8080 1 ['--http_port', 'eighty', '--workers', '9']"
