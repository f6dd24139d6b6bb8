"""The pieces of `makeusrich up` that need no running system: run records in the store (both backends), pair
files as the runner and the dashboard read them, the log lines it shows, the bundled pair, the offline feed."""

from __future__ import annotations

import asyncio
import functools
import shutil
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from makeusrich.errors import CandleError, StoreError
from makeusrich.local import runner as runner_module
from makeusrich.local.runner import PairSlot, Runner, UpPlan, seed_pairs
from makeusrich.local.training import LINE_BYTES_KEPT, log_lines, outcome, render_line
from makeusrich.market import CandleFeed, Source, binance
from makeusrich.pair import read_pair_files
from makeusrich.store import (
    ObjectStore,
    PairStore,
    RunState,
    pair_store,
    read_run_state,
    write_run_log,
    write_run_state,
)
from makeusrich.store.runs import LOGS_KEPT
from makeusrich.ui.badges import badges, run_progress
from makeusrich.ui.card import PairState
from makeusrich.ui.card_html import card_html
from tests.fixtures.models import small_pair

ROOT = Path(__file__).resolve().parents[2]


def test_run_state_and_logs_round_trip_and_only_the_newest_logs_stay(object_store: ObjectStore) -> None:
    store = PairStore(object_store, "default", "btc-usdt")
    assert read_run_state(store) is None
    state = RunState(state="training", started_at="2026-12-01T17:00:00Z", spec_sha256="ab", epoch=3, max_epochs=50)
    write_run_state(store, state)
    assert read_run_state(store) == state
    for i in range(LOGS_KEPT + 3):
        write_run_log(store, f"20261201T1700{i:02d}Z.log", f"run {i}\n")
    logs = [key for key in object_store.list(store.prefix + "runs/") if key.endswith(".log")]
    assert len(logs) == LOGS_KEPT and logs[0].endswith("T170003Z.log")
    assert (
        object_store.get(f"{store.prefix}runs/20261201T1700{LOGS_KEPT + 2:02d}Z.log")
        == f"run {LOGS_KEPT + 2}\n".encode()
    )


def test_a_malformed_run_state_is_refused_with_the_field(object_store: ObjectStore) -> None:
    store = PairStore(object_store, "default", "btc-usdt")
    object_store.put(store.prefix + "runs/state.json", b'{"state": "exploded", "startedAt": "x", "specSha256": "a"}')
    with pytest.raises(StoreError, match=r"runs/state.json is malformed: state: Input should be 'training'"):
        read_run_state(store)


def test_pair_files_are_read_alike_by_the_runner_and_the_dashboard(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "a.yaml").write_text((ROOT / "manifests" / "examples" / "btc-usdt.yaml").read_text())
    (folder / "b.yml").write_text((ROOT / "manifests" / "examples" / "btc-usdt.yaml").read_text())
    (folder / "broken.yaml").write_text("spec: [")
    (folder / ".hidden.yaml").write_text("spec: [")
    (folder / "notes.txt").write_text("not a pair")
    outside = tmp_path / "eth.yaml"
    outside.write_text(
        (ROOT / "manifests" / "examples" / "btc-usdt.yaml").read_text().replace("btc", "eth").replace("eth-usdt", "e")
    )
    found = read_pair_files(folder, [outside])
    assert [f.path.name for f in found] == ["eth.yaml", "a.yaml", "b.yml", "broken.yaml"]
    assert found[0].pair is not None and found[1].pair is not None and found[1].pair.name == "btc-usdt"
    assert found[2].pair is None and found[2].problem == (
        f"{folder / 'b.yml'} declares default/btc-usdt again (first in {folder / 'a.yaml'}); rename or remove one"
    )
    assert found[3].pair is None and "is not valid YAML" in str(found[3].problem)
    assert read_pair_files(tmp_path / "missing") == []


def test_the_bundled_pair_is_the_example_and_is_seeded_only_once(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    assert seed_pairs(folder) is True
    assert (folder / "btc-usdt.yaml").read_bytes() == (ROOT / "manifests" / "examples" / "btc-usdt.yaml").read_bytes()
    (folder / "btc-usdt.yaml").unlink()  # the user removed it: a later start must not bring it back
    assert seed_pairs(folder) is False and list(folder.iterdir()) == []


def test_log_lines_read_as_a_person_reads_them() -> None:
    line = '{"time": "t", "level": "info", "logger": "x", "message": "epoch done", "epoch": 3, "max_epochs": 50}'
    assert render_line(line) == "info epoch done epoch=3 max_epochs=50"
    failed = '{"time": "t", "level": "error", "logger": "x", "message": "boom", "exception": "Traceback ..."}'
    assert render_line(failed) == "error boom\nTraceback ..."
    assert render_line("makeusrich train: the store is full") == "makeusrich train: the store is full"
    assert render_line("[1, 2]") == "[1, 2]"


async def test_a_log_line_longer_than_the_pipe_buffer_is_cut_and_reading_goes_on() -> None:
    """A trainer log line of 200 kB (a Binance 500 with its error page) stopped `up` reading the trainer's pipe
    ("Separator is not found, and chunk exceed the limit"), so the trainer blocked writing and never ended."""
    script = (
        "import sys; w = sys.stderr.write; w('x' * 200_000 + '\\n'); w('{\"message\": \"epoch done\"}\\n');"
        "w('y' * 300_000)"
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=asyncio.subprocess.PIPE)
    assert child.stderr is not None
    lines = [line async for line in log_lines(child.stderr)]
    assert await child.wait() == 0  # it was never left blocked on a full pipe
    assert lines[0] == b"x" * LINE_BYTES_KEPT + b" [line cut]"
    assert lines[1] == b'{"message": "epoch done"}\n'  # the next line whole, as the runner's progress needs
    assert lines[2] == b"y" * LINE_BYTES_KEPT + b" [line cut]" and len(lines) == 3


def test_a_training_shows_its_progress_and_a_failure_its_reason_on_the_card() -> None:
    pair = small_pair()
    training = RunState(
        state="training",
        started_at="2026-12-01T17:00:00Z",
        spec_sha256="a",
        epoch=3,
        max_epochs=50,
        validation_loss=0.43216,
    )
    state = PairState("default/btc-usdt", "btc-usdt", "default", pair, run=training)
    assert run_progress(training) == "epoch 3 of 50 · validation loss 0.4322"
    assert run_progress(training.model_copy(update={"epoch": None})) == "loading candles"
    assert [(b.text, b.tone) for b in badges(state)][:2] == [("Training", "info"), ("No model", "warning")]
    assert "Training: epoch 3 of 50 · validation loss 0.4322" in card_html(state, None)
    failed = training.model_copy(update={"state": "failed", "message": "training failed: no candles"})
    broken = PairState("default/btc-usdt", "btc-usdt", "default", pair, run=failed, offline="offline sample data")
    assert ("Training failed", "negative") in [(b.text, b.tone) for b in badges(broken)]
    assert broken.errors == ["training failed: no candles"]
    html = card_html(broken, None)
    assert "⚠ training failed: no candles" in html and "Training:" not in html and "offline sample data" in html


def test_the_feed_stands_the_sample_in_while_binance_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance, "fetch_klines", functools.partial(binance.fetch_klines, backoff_s=0.01))
    now = [1_800_000_000.0]
    feed = CandleFeed(Source("auto"), api_url="http://127.0.0.1:9/api", clock=lambda: now[0])
    btc, eth = small_pair().spec, small_pair(currency="eth").spec
    assert feed.origin(btc) == Source("binance")
    assert len(feed.recent(btc, 5)) == 5 and feed.origin(btc) == Source("sample")
    with pytest.raises(CandleError, match="ETHUSDT 1h has no offline data"):
        feed.recent(eth, 5)
    now[0] += CandleFeed.OFFLINE_RETRY_S + 1
    assert feed.origin(btc) == Source("binance")  # Binance is asked again after a while


def runner(tmp_path: Path, store: str) -> tuple[Runner, list[str]]:
    said: list[str] = []
    plan = UpPlan(tmp_path / "pairs", (), store, "sample", "127.0.0.1", 1, 2, 1, 2.0)
    return Runner(plan, say=said.append), said


def test_a_training_killed_by_the_kernel_is_a_failure_not_an_interruption(tmp_path: Path) -> None:
    """Retried at the next schedule, not at the next scan: an out-of-memory kill would otherwise loop."""
    state = RunState(state="training", started_at="2026-12-01T17:00:00Z", spec_sha256="a")
    now = datetime(2026, 12, 1, 17, 5, tzinfo=UTC)
    killed = outcome(state, -9, b"", ["info epoch done"], "x.log", now, stopped=False)
    assert killed.state == "failed" and "killed by signal 9 (SIGKILL; out of memory?)" in str(killed.message)
    assert killed.finished_at == "2026-12-01T17:05:00Z"
    assert outcome(state, -2, b"", [], "x.log", now, stopped=True).state == "interrupted"


def test_a_run_cut_off_with_an_earlier_runner_is_closed_at_the_next_start(tmp_path: Path) -> None:
    """`up` killed mid-training left the run "training" in the store: the card said "Training: epoch 1 of 6" until
    the next scheduled run, hours later. The next runner closes it as interrupted, saying why."""
    up, _ = runner(tmp_path, str(tmp_path / "store"))
    pair = small_pair(suspend=True)  # nothing is trained here: only the run state is looked at
    store = pair_store(str(tmp_path / "store"), pair.namespace, pair.name)
    write_run_state(store, RunState(state="training", started_at="2026-12-01T17:00:00Z", spec_sha256="a", epoch=1))
    asyncio.run(up._plan_pair(PairSlot(tmp_path / "btc-usdt.yaml", pair)))
    closed = read_run_state(store)
    assert closed is not None and closed.state == "interrupted" and closed.epoch == 1
    assert "cut off when an earlier makeusrich up stopped" in str(closed.message) and closed.finished_at
    card = PairState("default/btc-usdt", "btc-usdt", "default", pair, run=closed)
    assert "Training" not in [b.text for b in badges(card)] and "Training:" not in card_html(card, None)


def test_a_training_that_cannot_even_start_is_said_and_waits_for_its_schedule(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    up, said = runner(tmp_path, str(blocked))
    slot = PairSlot(tmp_path / "btc-usdt.yaml", small_pair())
    asyncio.run(up._train(slot, "no model yet"))
    assert slot.ran is not None and slot.ran.state == "failed"
    assert said[-1].startswith("btc-usdt: training could not run: ") and "next scheduled time" in said[-1]


def test_a_child_started_after_the_stop_began_is_stopped_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race a Ctrl-C right after "training (no model yet)" hits: the trainer starts after the stop signalled
    the others, and must get the same signal rather than run on unwatched."""
    # The stand-in trainer is sleep(1), not Python: a Python child signalled while still starting up (importing
    # site) dies of a KeyboardInterrupt with exit status 1, after that of the signal; sleep always of the signal.
    sleep = shutil.which("sleep")
    assert sleep is not None
    monkeypatch.setattr(runner_module, "command", lambda *args: [sleep, "60"])
    up, _ = runner(tmp_path, str(tmp_path / "store"))

    async def late_start() -> int | None:
        up.stopping.set()
        process = await up._spawn(("train",), signal.SIGINT)
        return await asyncio.wait_for(process.wait(), timeout=10)

    assert asyncio.run(late_start()) == -signal.SIGINT  # ended by SIGINT, as Ctrl-C ends it, not at sleep's end


def test_a_first_training_reads_a_shorter_history_and_later_ones_the_pair_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pair without a model gets a first one within minutes (365 days), the schedule then the better one
    (lookbackDays, 1095 by default): what was run is what `makeusrich train` was told."""
    asked: list[tuple[str, ...]] = []

    def fake_command(*args: str) -> list[str]:
        asked.append(args)
        return [sys.executable, "-c", "pass"]

    monkeypatch.setattr(runner_module, "command", fake_command)
    said: list[str] = []
    plan = UpPlan(tmp_path / "pairs", (), str(tmp_path / "store"), "sample", "127.0.0.1", 1, 2, 1, 2.0)
    up = Runner(replace(plan, first_lookback_days=365), say=said.append)
    slot = PairSlot(tmp_path / "btc-usdt.yaml", small_pair(lookbackDays=1095))
    asyncio.run(up._run_training(slot, "no model yet"))
    asyncio.run(up._run_training(slot, "scheduled"))
    first, later = asked
    assert first[first.index("--lookback-days") + 1] == "365" and "--lookback-days" not in later
    assert "btc-usdt: training (no model yet; a first model on 365 days, then 1095 days on the schedule)" in said
