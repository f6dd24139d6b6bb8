"""Every environment variable the package reads is documented: in makeusrich.environment, the README and --help."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from makeusrich.cli import build_parser
from makeusrich.cliargs import MarketSettings
from makeusrich.environment import VARIABLES, WRITTEN
from makeusrich.local.cli import UpSettings
from makeusrich.operator.settings import OperatorSettings
from makeusrich.serving.options import PredictSettings, ServeOptions
from makeusrich.settings import variables
from makeusrich.track.settings import TrackSettings
from makeusrich.trainer.cli import TrainSettings
from makeusrich.ui.settings import UIConfig

ROOT = Path(__file__).resolve().parents[1]
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
    assert names - known - set(WRITTEN) == set(), "describe these in makeusrich/environment.py or in settings"
    readme = (ROOT / "README.md").read_text()
    assert [name for name in sorted(known) if f"`{name}`" not in readme] == [], "document these in the README"
    shown = every_help()
    assert [name for name in sorted(known) if name not in shown] == [], "name these in a command's --help"


def test_help_lists_what_a_command_reads() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "makeusrich.cli", "train", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0
    environment = result.stdout.split("environment:", 1)[1]
    read = ("MAKEUSRICH_STORE", "MAKEUSRICH_PAIR", "S3_USE_HTTPS", "BINANCE_API_URL", "MAKEUSRICH_BINANCE_RETRIES")
    for name in read:
        assert f"  {name} " in environment, name
    assert "Times name the moment a candle closes" in result.stdout
