"""The command line as a user runs it: real subprocesses, exit codes and what they print."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from makeusrich.cli import build_parser
from tests.fixtures.shell import ROOT, clean_env, makeusrich

EXAMPLE = ROOT / "manifests" / "examples" / "btc-usdt.yaml"


def short_training(store: Path) -> tuple[str, ...]:
    """Arguments of a train run on the sample that takes seconds: one epoch on 80 days."""
    return ("--source", "sample", "--store", f"file://{store}", "--max-epochs", "1", "--lookback-days", "80")


@pytest.mark.parametrize("command", ["crd", "candles", "train", "serve", "predict", "render", "operator", "ui"])
def test_every_command_has_help(command: str) -> None:
    result = makeusrich(command, "--help")
    assert result.returncode == 0 and "usage: makeusrich" in result.stdout


def test_crd_prints_the_manifest() -> None:
    result = makeusrich("crd")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout) == yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())


def test_train_on_the_sample_prints_json_metadata(tmp_path: Path) -> None:
    result = makeusrich(
        "--log-json",
        "train",
        "-f",
        str(EXAMPLE),
        *short_training(tmp_path),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)
    assert meta["pair"] == "btc-usdt" and meta["window"] == 120 and meta["training"]["epochs"] == 1
    log_lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line["message"] == "epoch done" for line in log_lines)  # structured progress off a terminal
    assert (tmp_path / "default" / "btc-usdt" / "versions" / meta["version"] / "metadata.json").exists()


def test_a_latest_json_naming_no_time_is_replaced_by_a_baseline(tmp_path: Path) -> None:
    """20261399T256161Z matches the version pattern but is no time: `train` once died of a strptime traceback.
    Now the store refuses it in one sentence, and the run replaces what nothing can serve with a baseline."""
    latest = tmp_path / "default" / "btc-usdt" / "latest.json"
    latest.parent.mkdir(parents=True)
    document = {"version": "20261399T256161Z", "storageUri": "x", "modelSha256": "0" * 64, "promotedAt": "x"}
    latest.write_text(json.dumps(document))
    result = makeusrich("train", "-f", str(EXAMPLE), *short_training(tmp_path))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (
        "the served version is unusable ('20261399T256161Z' is not a model version; versions are the UTC time of "
        "their run, like 20261126T150000Z); a baseline replaces it"
    ) in result.stderr
    served = json.loads(latest.read_text())["version"]
    assert (latest.parent / "versions" / served / "metadata.json").is_file()


def test_a_password_in_the_s3_endpoint_is_never_repeated() -> None:
    env = clean_env(S3_ENDPOINT="http://admin:hunter2@127.0.0.1:9", AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b")
    for args in (("train", "-f", str(EXAMPLE), "--source", "sample"), ("serve",)):
        result = makeusrich(*args, "--store", "s3://models", env=env)
        assert result.returncode == 1 and "hunter2" not in result.stdout + result.stderr, result.stderr[-2000:]
        assert "had a user name or password before '@' (not repeated here)" in result.stderr.splitlines()[-1]


def test_bad_pair_file_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("window: 120", "window: 2"))
    result = makeusrich("train", "-f", str(bad), "--source", "sample", "--store", f"file://{tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"makeusrich train: {bad}: invalid CurrencyPair: spec.model.window: "
        "Input should be greater than or equal to 8 (got 2)"
    ]
    assert not (tmp_path / "default").exists()


def test_candles_from_a_csv_file(tmp_path: Path) -> None:
    golden = ROOT / "tests" / "data" / "BTCUSDT-1h-20240101-20240102.csv"
    pair = tmp_path / "pair.yaml"
    pair.write_text(EXAMPLE.read_text().replace("lookbackDays: 1095", "lookbackDays: 1"))
    result = makeusrich("candles", "-f", str(pair), "--source", f"file:{golden}", "--last", "3")
    assert result.returncode == 0, result.stderr
    assert "BTCUSDT 1h from file:" in result.stdout and "24 candles" in result.stdout
    assert "closes at (UTC)" in result.stdout
    assert "2024-01-03 00:00" in result.stdout  # the last candle opened at 23:00: it is named by its close


def test_unknown_source_is_refused() -> None:
    result = makeusrich("candles", "-f", str(EXAMPLE), "--source", "ftp://x")
    assert result.returncode == 1 and "unknown candle source 'ftp://x'" in result.stderr


def test_train_reads_the_pair_from_the_environment_as_a_job_does(tmp_path: Path) -> None:
    env = {**os.environ, "MAKEUSRICH_PAIR": json.dumps(yaml.safe_load(EXAMPLE.read_text()))}
    result = makeusrich("train", *short_training(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "default/btc-usdt version" in result.stdout


def test_train_without_a_pair_says_how_to_give_one() -> None:
    result = makeusrich("train", env={k: v for k, v in os.environ.items() if k != "MAKEUSRICH_PAIR"})
    assert result.returncode == 1
    assert "pass -f pair.yaml or set MAKEUSRICH_PAIR" in result.stderr


def test_every_command_the_docs_name_exists() -> None:
    """`makeusrich WORD` in the README or docs/ is a command whose --help works (a renamed or planned command
    would otherwise send a new user into an error)."""
    texts = [(ROOT / "README.md").read_text(), *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]
    named = {word for text in texts for word in re.findall(r"\bmakeusrich ([a-z][a-z-]*)\b", text)}
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"up", "serve", "ui", "train"} <= named
    assert named - commands == set(), "the docs name commands that do not exist"
