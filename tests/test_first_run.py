"""What a new user meets: the README's first command, and every command with its own defaults, from an empty folder.

Each test runs the real command line in a fresh working folder with none of the project's variables set, as on a
fresh clone; only the training is shortened. The servers are real (`makeusrich serve`, `makeusrich ui`), Binance
is the loopback stand-in, and nothing is mocked.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.model_server import free_port
from tests.fixtures.shell import ROOT, clean_env, command, makeusrich
from tests.fixtures.waiting import eventually_sync, still_running
from tests.ui.browser import stop

EXAMPLE = ROOT / "manifests" / "examples" / "btc-usdt.yaml"
SHORT = ("--max-epochs", "1", "--lookback-days", "80")  # a default pair, trained in seconds
RUN_ARGS = (f"RUN_ARGS={' '.join(SHORT)}",)
START_TIMEOUT = 90.0


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command(*args), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=clean_env())


def wait_until(url: str, process: subprocess.Popen[bytes], log: Path, ok: str = "") -> httpx.Response:
    """Poll `url` until it answers 200 (and its body holds `ok`); fail with the log if the process exits first."""

    def answer() -> httpx.Response:
        still_running(process, f"the server for {url}", log.read_text)
        response = httpx.get(url, timeout=2.0)
        assert response.status_code == 200 and ok in response.text, f"{response.status_code}: {response.text[:300]}"
        return response

    return eventually_sync(
        answer,
        what=f"{url} to answer 200" + (f" with {ok!r}" if ok else ""),
        timeout=START_TIMEOUT,
        interval=0.1,
        ignoring=(httpx.TransportError,),
        context=lambda: log.read_text()[-3000:],
    )


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "fresh"
    folder.mkdir()
    return folder


def test_make_run_from_an_empty_folder_runs_the_bundled_pair_until_ctrl_c(empty: Path) -> None:
    """`make run` itself (the Makefile's recipe: `makeusrich up` with its default pairs folder, store and ports),
    with only the training shortened; Binance unreachable, so the bundled sample stands in."""
    from tests.local.up import Up, assert_store_consistent

    venv = Path(sys.prefix)
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), "-o", f"{venv}/.installed", "run", f"VENV={venv}", *RUN_ARGS]
    up = Up.start(empty, command=make, name="make-run")
    try:
        up.wait_for(f"Created {empty / 'pairs'} with the bundled btc-usdt.yaml")
        up.wait_for(
            "Dashboard:   http://127.0.0.1:8081\nv2 endpoint: http://127.0.0.1:8080/v2/models/<pair>/infer "
            "(<namespace>.<pair> outside default)\n"
            "Track:       http://127.0.0.1:8082/metrics"
        )
        text = up.wait_for("btc-usdt: LSTM version ")
        assert "btc-usdt: baseline version " in text  # served before the LSTM trains, whatever the LSTM does
        outcome = next(line for line in text.splitlines() if line.startswith("btc-usdt: LSTM version "))
        assert "of persistence's" in outcome and ("promoted and served" in outcome or "not promoted: " in outcome)
        up.wait_ready("btc-usdt")
        health = httpx.get(f"{up.dashboard}/healthz", timeout=5).json()
        assert health["loaded"] and health["pairs"] == 1, health
        track = httpx.get(f"{up.track}/healthz", timeout=5).json()  # offline: the tracker says so, records nothing
        assert track["status"] == "ok" and track["offline"] == ["default/btc-usdt"], track
        assert not (empty / ".makeusrich" / "store" / "default" / "btc-usdt" / "track").exists()
        up.wait_for("btc-usdt: next training ")
        _, took = up.interrupt()  # make itself reports the interrupt; `up` says it stopped cleanly
        assert took < 10.0
        assert up.output().rstrip().endswith("Stopped.")
        store = empty / ".makeusrich" / "store"
        assert assert_store_consistent(store) == ["btc-usdt"]
    finally:
        up.kill()


def test_serve_predict_and_ui_find_the_default_store(empty: Path) -> None:
    """Train, serve, predict and the dashboard, each told nothing about the store: they meet in ./.makeusrich."""
    (empty / "pairs").mkdir()  # the dashboard's default pairs folder
    pair = empty / "pairs" / "btc-usdt.yaml"
    # The example pair, with a point bar that a one-epoch model clears.
    pair.write_text(EXAMPLE.read_text().replace("maxRelativeMAE: 1.0", "maxRelativeMAE: 10.0"))
    trained = makeusrich("train", "-f", str(pair), "--source", "sample", *SHORT, cwd=empty, env=clean_env())
    assert trained.returncode == 0, trained.stderr[-3000:]
    store = (empty / ".makeusrich" / "store").resolve()
    # The summary `train` prints (what the CronJob's log shows): the baseline first (a new pair serves it before
    # the LSTM trains), then the LSTM; each with its version, why, both splits and where it went.
    first, second = trained.stdout.split("\n\n")
    for block, kind in ((first, "baseline"), (second, "LSTM")):
        lines = block.splitlines()
        assert lines[0].startswith("default/btc-usdt version ") and f", {kind}" in lines[0]
        version = lines[0].split()[2].rstrip(",")
        assert "of persistence's" in lines[1]
        for line, ranged, split in zip(lines[2:6:2], lines[3:7:2], ("validation", "test"), strict=True):
            assert line.split()[0] == split and " vs persistence " in line and "(ratio " in line
            assert (
                "90% range covers " in ranged
                and "of climatology's" in ranged
                and "of EWMA's" in ranged
                and "of HAR's" in ranged
            )
        assert lines[-1] == f"  stored at {store.as_uri()}/default/btc-usdt/versions/{version}/"
        assert (store / "default" / "btc-usdt" / "versions" / version / "metadata.json").is_file()
    assert first.splitlines()[0].endswith(": promoted")  # the baseline always is, on a pair that serves nothing
    assert second.splitlines()[-2].endswith("from the seed: the pair has no LSTM version to start from (best epoch 1)")
    serve_port, ui_port = free_port(), free_port()
    server = start(["serve", "--port", str(serve_port)], empty, empty / "serve.log")
    dashboard: subprocess.Popen[bytes] | None = None
    try:
        url = f"http://127.0.0.1:{serve_port}"
        wait_until(f"{url}/v2/models/btc-usdt/ready", server, empty / "serve.log")
        predicted = makeusrich(
            "predict", "-f", str(pair), "--source", "sample", "--url", url, cwd=empty, env=clean_env()
        )
        assert predicted.returncode == 0, predicted.stderr
        assert "last close" in predicted.stdout and "close at (UTC)" in predicted.stdout

        args = ["ui", "--port", str(ui_port), "--server-url", url, "--source", "sample"]
        dashboard = start(args, empty, empty / "ui.log")
        health = wait_until(f"http://127.0.0.1:{ui_port}/healthz", dashboard, empty / "ui.log", '"loaded":true')
        assert health.json()["pairs"] == 1 and health.json()["errors"] == {}, health.json()
        assert f"models from {store}" in (empty / "ui.log").read_text()
    finally:
        stop(server)
        if dashboard is not None:
            stop(dashboard)
    assert "Warning" not in (empty / "serve.log").read_text()  # e.g. a deprecation on the first request


@pytest.fixture
def recent_binance() -> Iterator[FakeBinance]:
    """The loopback Binance with BTCUSDT candles up to now (the bundled history ends in 2022)."""
    with FakeBinance(bundled=False) as server:
        server.add_synthetic("BTCUSDT", "1h", 24 * 1100)  # more than the default lookback (1095 days)
        yield server


def test_other_commands_with_their_defaults(empty: Path, recent_binance: FakeBinance) -> None:
    crd = makeusrich("crd", cwd=empty, env=clean_env())
    assert crd.returncode == 0 and "kind: CustomResourceDefinition" in crd.stdout
    render = makeusrich("render", "-f", str(EXAMPLE), cwd=empty, env=clean_env())
    assert render.returncode == 0 and "kind: CronJob" in render.stdout
    candles = makeusrich("candles", "-f", str(EXAMPLE), cwd=empty, env=clean_env(BINANCE_API_URL=recent_binance.url))
    assert candles.returncode == 0, candles.stderr
    assert "BTCUSDT 1h from binance: 26280 candles" in candles.stdout
    operator = makeusrich("operator", cwd=empty, env=clean_env(HOME=str(empty)))  # no cluster to log in to
    assert operator.returncode == 1 and operator.stderr.count("\n") == 1
    assert operator.stderr.startswith("makeusrich operator: cannot log in to Kubernetes")


def test_no_network_fails_fast_and_names_the_way_out(empty: Path) -> None:
    """Offline, --source binance (the default) says which host it could not reach and what to use instead."""
    env = clean_env(BINANCE_API_URL="https://api.binance.invalid/api")  # `.invalid` never resolves (RFC 6761)
    result = makeusrich("train", "-f", str(EXAMPLE), cwd=empty, env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("makeusrich train: cannot reach Binance at api.binance.invalid: its name does not resolve")
    assert "--source sample" in last and "--source file:PATH" in last
    retries = [line for line in result.stderr.splitlines() if "retry" in line]
    assert len(retries) == 1  # one retry, not five with growing backoff
    assert not (empty / ".makeusrich" / "store" / "default" / "btc-usdt" / "versions").exists()


def test_a_url_without_a_scheme_is_an_input_error(empty: Path) -> None:
    with socket.socket() as busy:  # something listens there: the message must not say it is unreachable
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        url = f"127.0.0.1:{port}"
        result = makeusrich(
            "predict", "-f", str(EXAMPLE), "--source", "sample", "--url", url, cwd=empty, env=clean_env()
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"makeusrich predict: the model server URL '127.0.0.1:{port}' has no scheme; write it as http://127.0.0.1:{port}"
    ]


def test_the_dashboard_on_a_busy_port_fails_before_announcing_anything(empty: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = makeusrich("ui", "--port", str(port), "--source", "sample", cwd=empty, env=clean_env())
    assert result.returncode == 1
    assert "dashboard on" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"makeusrich ui: cannot listen on 127.0.0.1:{port}: Address already in use; pick another --port or stop "
        "what uses it"
    ]


def test_usage_mistakes_exit_2_as_the_readme_says(empty: Path) -> None:
    result = makeusrich("train", "--no-such-flag", cwd=empty, env=clean_env())
    assert result.returncode == 2 and result.stderr.startswith("usage: makeusrich")
    readme = (ROOT / "README.md").read_text()
    assert "exit with status 1" in readme and "status 2" in readme
