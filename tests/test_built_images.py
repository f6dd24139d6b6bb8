"""The five images, built by `images/build.py` (what `make images` runs) and each run as the chart runs it: user
10001, a read-only root filesystem, /tmp the only writable place, every capability dropped, no new privileges.

- trainer: trains the bundled sample into a mounted folder store, with no network at all; its torch is the CPU build;
- serving: serves that version from a mounted model folder (as KServe mounts /mnt/models) with the runtime's own
  arguments, and answers a v2 inference over REST and over gRPC with what onnxruntime computes on the host;
- operator: against the Kubernetes API emulator, makes a new pair's CronJob;
- dashboard: answers its page;
- tracker: answers /metrics and /healthz.

The images are built once for the module (podman or buildah, chroot isolation; several minutes on two cores) and
run with podman and runc (crun cannot set this sandbox's limits). The servers share the host's network and
listen on loopback ports of the test's choosing (no port mapping, which would need iptables); the trainer has
no network at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from makeusrich.contract import DEFAULT_NAMESPACE
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import API_VERSION, KIND
from makeusrich.pair_sources import pair_yaml
from makeusrich.store import pair_store
from makeusrich.v2client import V2Client
from tests.fixtures.kube_emulator import CRONJOBS, Emulator, write_kubeconfig
from tests.fixtures.model_server import free_port
from tests.fixtures.models import small_pair
from tests.fixtures.waiting import eventually, eventually_sync
from tests.serving.helpers import real_windows

ROOT = Path(__file__).resolve().parents[1]
REGISTRY, TAG = "localhost/makeusrich-test", "ci"
USER = "10001:10001"
# As the chart's pods run: restricted, read-only, /tmp an emptyDir (a tmpfs here).
AS_THE_CHART = [
    "--runtime", "runc", "--user", USER, "--read-only", "--tmpfs", "/tmp:rw,mode=1777,size=512m",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
]  # fmt: skip
BUILD_TIMEOUT_S = 45 * 60
PAIR = "btc-usdt"


def image(target: str) -> str:
    return f"{REGISTRY}/{target}:{TAG}"


def podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def built() -> str:
    """The five images, built from this working tree by images/build.py; its log, for the engine it chose."""
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    assert not missing, f"{', '.join(missing)} missing: `make containers` installs buildah, podman, runc, mmdebstrap"
    done = subprocess.run(
        [sys.executable, str(ROOT / "images" / "build.py"), "--registry", REGISTRY, "--tag", TAG],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return done.stdout


def writable_folder(parent: Path, name: str) -> Path:
    """A folder the image's user may write (the pods' volumes are theirs)."""
    folder = parent / name
    folder.mkdir()
    os.chown(folder, 10001, 10001)
    return folder


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="makeusrich-images-"))
    folder.chmod(0o755)
    (folder / "pairs").mkdir()
    (folder / "pairs" / f"{PAIR}.yaml").write_text(pair_yaml(small_pair(PAIR)))
    writable_folder(folder, "store")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(built: str, workspace: Path) -> str:
    """The trainer image's run: the sample trained into the mounted store, with no network. Returns the version
    latest.json names."""
    done = podman(
        "run", "--rm", *AS_THE_CHART, "--network", "none",
        "-v", f"{workspace / 'pairs'}:/pairs:ro", "-v", f"{workspace / 'store'}:/store",
        image("trainer"), "train", "-f", f"/pairs/{PAIR}.yaml", "--source", "sample", "--store", "file:///store",
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    latest = json.loads((workspace / "store" / DEFAULT_NAMESPACE / PAIR / "latest.json").read_text())
    version: str = latest["version"]
    return version


def test_the_build_says_which_engine_and_base_it_used(built: str) -> None:
    assert "images: engine " in built
    assert "built " + ", ".join(image(t) for t in ("trainer", "serving", "operator", "dashboard", "tracker")) in built


def test_the_trainer_trains_the_sample_without_network_on_cpu_torch(trained: str, workspace: Path) -> None:
    store = pair_store(f"file://{workspace / 'store'}", DEFAULT_NAMESPACE, PAIR)
    assert trained in store.versions() and store.model_metadata(trained).pair == PAIR
    torch = podman("run", "--rm", *AS_THE_CHART, "--entrypoint", "python", image("trainer"), "-c",
                   "import torch; print(torch.__version__)")  # fmt: skip
    assert torch.returncode == 0 and torch.stdout.strip() == "2.13.0+cpu", torch.stdout + torch.stderr
    nothing = podman("run", "--rm", *AS_THE_CHART, "--entrypoint", "python", image("serving"), "-c", "import torch")
    assert "No module named 'torch'" in nothing.stderr  # the serving image carries no torch


class Running:
    """A detached container, removed at the end; its log says what went wrong."""

    def __init__(self, *args: str) -> None:
        done = podman("run", "-d", *AS_THE_CHART, *args)
        assert done.returncode == 0, done.stderr
        self.id = done.stdout.strip()

    def log(self) -> str:
        done = podman("logs", self.id)
        return (done.stdout + done.stderr)[-4000:]

    def alive(self) -> None:
        state = podman("inspect", "--format", "{{.State.Running}}", self.id).stdout.strip()
        assert state == "true", f"the container stopped:\n{self.log()}"

    def answers(self, url: str, what: str, timeout: float = 120) -> httpx.Response:
        def get() -> httpx.Response:
            self.alive()
            response = httpx.get(url, timeout=5)
            assert response.status_code == 200, f"{response.status_code}: {response.text[:300]}"
            return response

        return eventually_sync(get, what=what, timeout=timeout, ignoring=(httpx.TransportError,), context=self.log)

    def remove(self) -> None:
        podman("rm", "-f", "-t", "5", self.id)


def test_the_serving_image_answers_rest_and_grpc_as_onnxruntime_does(trained: str, workspace: Path) -> None:
    mount = workspace / "store" / DEFAULT_NAMESPACE / PAIR / "versions" / trained  # a Triton repository
    model = (mount / PAIR / "1" / "model.onnx").read_bytes()
    http, grpc = free_port(), free_port()
    server = Running(
        "--network", "host", "-v", f"{mount}:/mnt/models:ro", image("serving"),
        "serve", "--model-dir", "/mnt/models", "--host", "127.0.0.1", "--port", str(http), "--grpc-port", str(grpc),
    )  # fmt: skip
    try:
        server.answers(f"http://127.0.0.1:{http}/v2/health/ready", "the model server to be ready")
        windows = real_windows(24, 3, seed=5)
        expected = onnx_session(model).run(None, {"candles": windows})[0]

        async def both() -> list[np.ndarray]:
            answers = []
            for url in (f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}"):
                async with V2Client(url, timeout=10) as client:
                    answers.append(await client.infer(PAIR, windows))
            return answers

        rest, over_grpc = asyncio.run(both())
        assert np.array_equal(rest, expected) and np.array_equal(over_grpc, expected)
        assert "Failed to persist" not in server.log()  # onnxruntime has a writable home
    finally:
        server.remove()


@pytest.fixture
def embedded(built: str, workspace: Path) -> Iterator[Callable[[str, str], tuple[Running, str]]]:
    """Start the dashboard or tracker image on the mounted pair files, offline, on a loopback port: the container
    and its base URL. Removed at the end."""
    started: list[Running] = []

    def start(target: str, command: str) -> tuple[Running, str]:
        port = free_port()
        container = Running(
            "--network", "host", "-v", f"{workspace / 'pairs'}:/pairs:ro", image(target), command,
            "--pairs-dir", "/pairs", "--source", "sample", "--store", "file:///tmp/store",
            "--host", "127.0.0.1", "--port", str(port),
        )  # fmt: skip
        started.append(container)
        return container, f"http://127.0.0.1:{port}"

    yield start
    for container in started:
        container.remove()


def test_the_dashboard_image_answers_its_page(embedded: Callable[[str, str], tuple[Running, str]]) -> None:
    dashboard, url = embedded("dashboard", "ui")
    assert "Make Us Rich" in dashboard.answers(f"{url}/", "the dashboard's page").text


def test_the_tracker_image_answers_metrics_and_health(embedded: Callable[[str, str], tuple[Running, str]]) -> None:
    tracker, url = embedded("tracker", "track")
    health = tracker.answers(f"{url}/healthz", "the tracker's first round")
    assert health.json()["offline"] == [f"{DEFAULT_NAMESPACE}/{PAIR}"]  # the sample: nothing to record
    metrics = tracker.answers(f"{url}/metrics", "the tracker's /metrics").text
    assert "makeusrich_track_round_seconds " in metrics and "makeusrich_track_server_up" in metrics


async def test_the_operator_image_makes_a_new_pair_s_cronjob(built: str, kube: Emulator, workspace: Path) -> None:
    config = write_kubeconfig(workspace / "kubeconfig", str(kube.url).rstrip("/"))
    config.chmod(0o644)
    liveness = free_port()
    operator = Running(
        "--network", "host", "-v", f"{config}:/kube/config:ro", "-e", "KUBECONFIG=/kube/config",
        "-e", "MAKEUSRICH_STORE=file:///tmp/store", "-e", f"MAKEUSRICH_IMAGE={image('trainer')}",
        image("operator"), "operator", "--liveness", f"http://127.0.0.1:{liveness}/healthz", "--interval", "60",
    )  # fmt: skip
    try:
        await asyncio.to_thread(operator.answers, f"http://127.0.0.1:{liveness}/healthz", "the operator's liveness")
        pair = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": PAIR, "namespace": "default"}}
        pair["spec"] = {"currency": "btc", "compare": "usdt", "trainOnCreate": False}
        async with kube.post(f"/apis/{API_VERSION}/namespaces/default/currencypairs", json=pair) as response:
            assert response.status == 201, await response.text()

        def cronjob() -> dict[str, Any]:
            operator.alive()
            found = kube.get(CRONJOBS, "default", f"{PAIR}-trainer")
            assert found is not None
            return found

        made = await eventually(cronjob, what="the pair's CronJob", timeout=60, context=operator.log)
        container = made["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == image("trainer")
    finally:
        operator.remove()
