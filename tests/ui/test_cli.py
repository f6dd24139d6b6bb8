"""`makeusrich ui`'s command line: the password hash helper and the mistakes it refuses before serving."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from makeusrich.cli import build_parser, main
from makeusrich.ui.auth import verify_password
from makeusrich.ui.cli import ui_config


def test_ui_command_is_registered_with_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAKEUSRICH_STORE", "MAKEUSRICH_SERVING_URL", "MAKEUSRICH_PAIRS_DIR", "MAKEUSRICH_UI_PORT"):
        monkeypatch.delenv(name, raising=False)
    parser = build_parser()
    chosen = ui_config(parser.parse_args(["ui", "--kubernetes", "--namespace", "team", "--port", "9000"]))
    assert chosen.kubernetes and chosen.namespace == "team" and chosen.port == 9000
    embedded = ui_config(parser.parse_args(["ui"]))
    assert not embedded.kubernetes and embedded.server_url == "http://127.0.0.1:8080" and embedded.port == 8081
    assert embedded.store_url == str(Path(".makeusrich/store").resolve()) and embedded.pairs_dir == "pairs"
    assert ui_config(parser.parse_args(["ui", "--kubernetes"])).store_url is None  # optional there
    monkeypatch.setenv("MAKEUSRICH_UI_PORT", "9100")  # every flag has a variable, and the flag wins
    assert ui_config(parser.parse_args(["ui"])).port == 9100
    assert ui_config(parser.parse_args(["ui", "--port", "9200"])).port == 9200


def test_hash_password_prints_a_hash_that_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["ui", "--hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("scrypt$") and verify_password("a long enough password", printed)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["ui", "--hash-password"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["ui", "--source", "coinbase"], {}, "unknown candle source 'coinbase'"),
        (["ui", "--refresh-seconds", "0"], {}, "--refresh-seconds (or MAKEUSRICH_UI_REFRESH_SECONDS): Input should be"),
        (["ui"], {"MAKEUSRICH_UI_PASSWORD_HASH": "plain"}, "is not a hash made by `makeusrich ui --hash-password`"),
        (["ui", "--kubernetes", "--kubeconfig", "/nonexistent/kubeconfig"], {}, "cannot read the kubeconfig"),
    ],
)
def test_mistakes_end_with_one_sentence(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("MAKEUSRICH_UI_PASSWORD_HASH", "MAKEUSRICH_UI_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("makeusrich ui: ") and message in err
