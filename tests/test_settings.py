"""Settings: one typed object per command, where a flag beats a variable and a variable beats the default; and every
environment variable the package reads is documented in makeusrich.settings, the README and --help."""

from __future__ import annotations

import argparse
import re

import pytest

from makeusrich.cli import build_parser
from makeusrich.errors import SettingsError
from makeusrich.local.cli import UpSettings
from makeusrich.operator.settings import OperatorSettings
from makeusrich.serving.options import PredictSettings, ServeOptions
from makeusrich.settings import VARIABLES, WRITTEN, MarketSettings, add_flags, from_args, variable, variables
from makeusrich.track.settings import TrackSettings
from makeusrich.trainer.cli import TrainSettings
from makeusrich.ui.settings import UIConfig
from tests.fixtures.shell import ROOT, makeusrich


def serve_args(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *flags])


def test_every_field_is_a_flag_whose_help_names_its_default_and_variable() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, ServeOptions)
    text = parser.format_help()
    for name in ServeOptions.model_fields:
        assert f"--{name.replace('_', '-')}" in text and variable(ServeOptions, name) in text
    assert "(default 8080; env MAKEUSRICH_SERVE_PORT)" in " ".join(text.split())
    assert variable(ServeOptions, "store") == "MAKEUSRICH_STORE"  # a shared name keeps it
    assert ("MAKEUSRICH_SERVE_PORT", "HTTP port (0 picks a free one) (default 8080)") in variables(ServeOptions)


def test_a_flag_beats_a_variable_which_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAKEUSRICH_SERVE_PORT", "MAKEUSRICH_SERVE_PAIRS", "MAKEUSRICH_SERVE_ACCESS_LOG", "MAKEUSRICH_STORE"):
        monkeypatch.delenv(name, raising=False)
    assert from_args(ServeOptions, serve_args()).port == 8080
    monkeypatch.setenv("MAKEUSRICH_SERVE_PORT", "9001")
    monkeypatch.setenv("MAKEUSRICH_SERVE_PAIRS", "btc-usdt, eth-usdt")  # comma-separated, as the flag
    monkeypatch.setenv("MAKEUSRICH_SERVE_ACCESS_LOG", "1")
    monkeypatch.setenv("MAKEUSRICH_STORE", "s3://models")
    chosen = from_args(ServeOptions, serve_args())
    assert (chosen.port, chosen.pairs, chosen.access_log, chosen.store) == (
        9001,
        ("btc-usdt", "eth-usdt"),
        True,
        "s3://models",
    )
    flagged = from_args(ServeOptions, serve_args("--port", "9002", "--pairs", "sol-usdt", "--store", "models"))
    assert (flagged.port, flagged.pairs, flagged.store) == (9002, ("sol-usdt",), "models")
    monkeypatch.setenv("MAKEUSRICH_SERVE_PORT", "")  # an empty variable is unset
    assert from_args(ServeOptions, serve_args()).port == 8080


@pytest.mark.parametrize(
    ("flags", "env", "sentence"),
    [
        (("--port", "eighty"), {}, "--port (or MAKEUSRICH_SERVE_PORT): Input should be a valid integer, "),
        ((), {"MAKEUSRICH_SERVE_PORT": "70000"}, "--port (or MAKEUSRICH_SERVE_PORT): Input should be less than or"),
        (("--max-body-mb", "0"), {}, "--max-body-mb (or MAKEUSRICH_SERVE_MAX_BODY_MB): Input should be greater than 0"),
        (("--model-dir", "m", "--pairs", "btc-usdt"), {}, "with --model-dir every model folder is served"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_flag_and_the_variable(
    flags: tuple[str, ...], env: dict[str, str], sentence: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAKEUSRICH_SERVE_PORT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        from_args(ServeOptions, serve_args(*flags))
    assert sentence in str(caught.value) and "\n" not in str(caught.value)


SETTINGS = (
    MarketSettings,
    UpSettings,
    TrainSettings,
    ServeOptions,
    PredictSettings,
    UIConfig,
    TrackSettings,
    OperatorSettings,
)
NAME = re.compile(r"[\"']((?:MAKEUSRICH|S3|AWS|BINANCE|NICEGUI|SSL|KUBERNETES)_[A-Z0-9_]*[A-Z0-9]|KUBECONFIG)[\"']")


def names_in_the_package() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "makeusrich").rglob("*.py"):
        found.update(NAME.findall(path.read_text()))
    return found


def every_help() -> str:
    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        texts += [sub.format_help() for sub in action.choices.values()]  # type: ignore[union-attr]
    return "\n".join(texts)


def settings_variables() -> set[str]:
    """What the commands' settings read: MAKEUSRICH_<COMMAND>_<FIELD>, or the shared name of a field's alias."""
    return {name for cls in SETTINGS for name, _ in variables(cls)}


def test_every_variable_read_is_listed_documented_and_in_some_help() -> None:
    names = names_in_the_package()
    assert {"S3_USE_HTTPS", "MAKEUSRICH_STORE", "BINANCE_API_URL"} <= names  # the scan finds what it should
    known = set(VARIABLES) | settings_variables()
    assert {"MAKEUSRICH_SERVE_PORT", "MAKEUSRICH_UI_SECURE_COOKIES", "MAKEUSRICH_IMAGE"} <= known
    assert names - known - set(WRITTEN) == set(), "describe these in settings.VARIABLES or a settings class"
    readme = (ROOT / "README.md").read_text()
    assert [name for name in sorted(known) if f"`{name}`" not in readme] == [], "document these in the README"
    shown = every_help()
    assert [name for name in sorted(known) if name not in shown] == [], "name these in a command's --help"


def test_help_lists_what_a_command_reads() -> None:
    result = makeusrich("train", "--help")
    assert result.returncode == 0
    environment = result.stdout.split("environment:", 1)[1]
    read = ("MAKEUSRICH_STORE", "MAKEUSRICH_PAIR", "S3_USE_HTTPS", "BINANCE_API_URL", "MAKEUSRICH_BINANCE_RETRIES")
    for name in read:
        assert f"  {name} " in environment, name
    assert "Times name the moment a candle closes" in result.stdout
