"""The images, checked without building them (no Docker engine runs here): pinned bases, a non-root user, COPY
sources that exist, entrypoints that are real commands, and extras that hold every import the command needs.

The last check runs the command's modules in a Python whose import system refuses every optional dependency the
image does not install (torch in the operator image, nicegui in the model server...): what the image would
raise at start, raised here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from makeusrich.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PINNED = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*$|@sha256:[0-9a-f]{64}$")
# What each command imports when it starts, beyond makeusrich.cli (which every entrypoint goes through).
COMMAND_MODULES = {
    "train": ["makeusrich.trainer.pipeline"],
    "serve": ["makeusrich.serving.server", "makeusrich.serving.loader"],
    "operator": ["makeusrich.operator.handlers", "makeusrich.operator.reconcile"],
    "ui": ["makeusrich.ui.app", "makeusrich.ui.root"],
    "track": ["makeusrich.track.tracker", "makeusrich.track.metrics"],
}
# Import names of the optional dependencies, by the extra that installs them.
# kserve depends on prometheus_client itself: the serving image has it without the track extra.
EXTRA_IMPORTS = {
    "train": {"torch", "onnx", "onnxruntime"},
    "serve": {"kserve", "onnx", "onnxruntime", "prometheus_client"},
}
EXTRA_IMPORTS |= {"operator": {"kopf"}, "ui": {"nicegui"}, "track": {"prometheus_client", "onnxruntime"}}


@dataclass
class Stage:
    dockerfile: str
    name: str
    base: str
    lines: list[str] = field(default_factory=list)

    def instruction(self, word: str) -> list[str]:
        return [line.split(None, 1)[1] for line in self.lines if line.split(None, 1)[0] == word]

    @property
    def extras(self) -> set[str]:
        found = set()
        for run in self.instruction("RUN"):
            for group in re.findall(r'"\.\[([\w,]+)\]"', run):
                found.update(group.split(","))
        return found


def stages(dockerfile: str) -> list[Stage]:
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    found: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            parts = line.split()
            found.append(Stage(dockerfile, parts[3] if len(parts) > 3 else parts[1], parts[1]))
        found[-1].lines.append(line)
    return found


def targets() -> list[Stage]:
    """The stages an image is built from: the ones with an entrypoint, each with what it inherits."""
    chosen = []
    for dockerfile in ("Dockerfile.trainer", "Dockerfile.operator"):
        by_name = {stage.name: stage for stage in stages(dockerfile)}
        for stage in by_name.values():
            if stage.instruction("ENTRYPOINT"):
                parent = by_name.get(stage.base)
                merged = Stage(dockerfile, stage.name, parent.base if parent else stage.base)
                merged.lines = [*(parent.lines if parent else []), *stage.lines]
                chosen.append(merged)
    return chosen


TARGETS = targets()


def test_the_images_are_the_five_the_chart_uses() -> None:
    assert sorted((t.dockerfile, t.name) for t in TARGETS) == [
        ("Dockerfile.operator", "dashboard"),
        ("Dockerfile.operator", "operator"),
        ("Dockerfile.operator", "tracker"),
        ("Dockerfile.trainer", "serving"),
        ("Dockerfile.trainer", "trainer"),
    ]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_bases_are_pinned_users_are_not_root_and_copies_exist(target: Stage) -> None:
    assert PINNED.search(target.base), f"{target.dockerfile}: base {target.base} is not pinned to an exact version"
    (user,) = target.instruction("USER")[-1:]
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit(), user
    for copy in target.instruction("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{target.dockerfile}: COPY {source} does not exist"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_entrypoint_is_a_real_command(target: Stage) -> None:
    assert json.loads(target.instruction("ENTRYPOINT")[-1]) == ["makeusrich"]
    command = json.loads(target.instruction("CMD")[-1])
    args = build_parser().parse_args(command)  # an unknown command or flag exits 2 here
    assert args.command == command[0]


BLOCKER = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in this image")
        return None
BLOCKED = set(sys.argv[1].split(","))
sys.meta_path.insert(0, Refuse())
import importlib
from makeusrich.cli import build_parser
build_parser()
for module in sys.argv[2].split(","):
    importlib.import_module(module)
"""


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_image_s_extras_hold_every_import_its_command_needs(target: Stage) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert target.extras <= set(pyproject["project"]["optional-dependencies"]), target.extras
    installed = set().union(*(EXTRA_IMPORTS[extra] for extra in target.extras))
    blocked = set().union(*EXTRA_IMPORTS.values()) - installed
    command = json.loads(target.instruction("CMD")[-1])[0]
    modules = COMMAND_MODULES[command]
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(sorted(blocked)), ",".join(modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, f"{target.name} image: {result.stderr.strip().splitlines()[-1:]}"


def test_the_blocker_would_notice_a_missing_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, "torch", "makeusrich.trainer.pipeline"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "torch is not installed in this image" in result.stderr


def test_make_images_builds_the_five_targets_with_the_chart_s_tags(tmp_path: Path) -> None:
    """No Docker engine runs here: a stand-in `docker` on PATH records what `make images` asks of it."""
    record = tmp_path / "docker.log"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    result = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "images", "REGISTRY=registry.example/mur", "PUSH=1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    calls = record.read_text().splitlines()
    builds = [c.split() for c in calls if c.startswith("build")]
    images = ("dashboard", "operator", "serving", "tracker", "trainer")
    assert sorted((b[b.index("--target") + 1], b[b.index("-t") + 1]) for b in builds) == [
        (name, f"registry.example/mur/{name}:0.1.0") for name in images
    ]
    assert sorted(c for c in calls if c.startswith("push")) == [
        f"push registry.example/mur/{name}:0.1.0" for name in images
    ]
    values = (ROOT / "charts" / "makeusrich" / "values.yaml").read_text()
    for name in images:
        assert f"repository: makeusrich/{name}" in values  # the chart's default names are these images
