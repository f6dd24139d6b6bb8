"""Settings: one typed object per command, where a flag beats a variable and a variable beats the default."""

from __future__ import annotations

import argparse

import pytest

from makeusrich.cli import build_parser
from makeusrich.errors import SettingsError
from makeusrich.serving.options import ServeOptions
from makeusrich.settings import add_flags, from_args, variable, variables


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
