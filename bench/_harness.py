"""What every benchmark shares, written once: the checkout on the path, /proc readings and the results writer.

- Path: importing this module (`import _harness`, before any `makeusrich` or `tests` import) puts this checkout
  first on sys.path, so a benchmark measures the code beside it, not an installed copy; `cli` and `child_env`
  do the same for the child processes a benchmark starts.
- /proc: resident memory now (VmRSS) and at its peak (VmHWM), proportional memory (Pss: a page shared by k
  processes counts 1/k in each, as a container's limit counts it), CPU seconds; `Sampler` keeps what the kernel
  does not (a peak of PSS, a process tree's memory phase by phase).
- Results: `Run.start(parser, __file__)` adds `--write`; `run.finish(body, ...)` prints the body and, with
  `--write`, records it in bench/results/<name>.md with the command as typed, the commit, every argument and
  setting, the date, the machine and its load, and the software, so that each number says how to reproduce it.
  The record stands between two marks naming the script; text outside them (notes written by hand) is kept.
- Pairs and models: the example pair with the overrides `makeusrich train` takes, the default model's shape for
  benchmarks of serving, one trained version published under many pair names.

Scripts in bench/probes/ and bench/experiments/ import this module through a link of the same name in their
folder (Python puts a script's own folder first on its path).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
if sys.path[0] != str(REPO):
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from makeusrich.pair import CurrencyPair

T = TypeVar("T")

# --- child processes -----------------------------------------------------------------------------------------------


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for a child process: this checkout first on PYTHONPATH, unbuffered output."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def cli(*args: str) -> list[str]:
    """The command line of `makeusrich ARGS` run by this interpreter (with `child_env`, from this checkout)."""
    return [sys.executable, "-m", "makeusrich.cli", *args]


# --- /proc ---------------------------------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (its peak since the process started) of a process, KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def rss_mib(pid: int) -> float:
    return memory_kib(pid)["VmRSS"] / 1024


def peak_rss_mib(pid: int) -> float:
    return memory_kib(pid)["VmHWM"] / 1024


def pss_mib(pids: Iterable[int]) -> float:
    """The processes' proportional set size summed: pages they share counted once."""
    total = 0
    for pid in pids:
        match = re.search(r"^Pss:\s+(\d+)", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
        total += int(match[1]) if match else 0
    return total / 1024


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces): field 3 is index 0."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_rss_mib(pgid: int) -> float:
    """Resident memory of every process of a process group (a runner and all its children), MiB."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat_fields(int(stat.parent.name))[2]) == pgid:
                total += rss_mib(int(stat.parent.name))
        except (OSError, KeyError, IndexError, ValueError):
            continue  # the process ended while it was read
    return total


class Sampler:
    """Samples `measure()` on a thread every `period` seconds (once at the start and once at the end too), each
    sample labelled with the phase the caller last set: for what the kernel keeps no peak of."""

    def __init__(self, measure: Callable[[], float], period: float = 0.25, phase: str = "") -> None:
        self.measure, self.period, self.phase = measure, period, phase
        self.samples: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((self.phase, self.measure()))
            if self._stop.wait(self.period):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.phase, self.measure()))

    def values(self, phase: str | None = None) -> list[float]:
        return [value for label, value in self.samples if phase is None or label == phase]

    def peak(self, phase: str | None = None) -> float:
        return max(self.values(phase), default=float("nan"))

    def median(self, phase: str | None = None) -> float:
        values = self.values(phase)
        return statistics.median(values) if values else float("nan")


# --- pairs and models ----------------------------------------------------------------------------------------------


# The example pair of the README and `make run`: the default settings the quality benchmarks measure.
EXAMPLE_PAIR = REPO / "manifests" / "examples" / "btc-usdt.yaml"


def example_pair(
    lookback_days: int | None = None, max_epochs: int | None = None, path: Path = EXAMPLE_PAIR
) -> CurrencyPair:
    """The example pair (or the one in `path`), with `makeusrich train`'s --lookback-days and --max-epochs
    overrides where given."""
    from makeusrich.pair import load_pair

    pair = load_pair(path)
    spec, model = pair.spec, pair.spec.model
    if max_epochs is not None:
        model = model.model_copy(update={"max_epochs": max_epochs})
    if lookback_days is not None:
        spec = spec.model_copy(update={"lookback_days": lookback_days})
    return pair.model_copy(update={"spec": spec.model_copy(update={"model": model})})


def training_arguments(parser: argparse.ArgumentParser, lookback_days: int, why: str) -> None:
    """`--lookback-days` (default `lookback_days`, for the reason `why`) and `--max-epochs` (short checks), as
    `makeusrich train` takes them: always explicit, so that a change of the pair's defaults changes no result."""
    parser.add_argument("--lookback-days", type=int, default=lookback_days, help=f"days of candles ({why})")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap the epochs (default: the pair's)")


def model_settings(pair: CurrencyPair) -> dict[str, object]:
    """What a trained model's numbers depend on, for the record: lookback and the model's main settings."""
    model = pair.spec.model.model_dump(by_alias=True)
    keys = ("window", "hiddenSize", "layers", "batchSize", "maxEpochs", "patience", "seed")
    return {"lookbackDays": pair.spec.lookback_days, **{key: model[key] for key in keys}}


# The default model's shape (makeusrich.pair.ModelSpec): what serving and tracking cost depends on.
DEFAULT_SHAPE = {"window": 120, "hiddenSize": 64, "layers": 2, "batchSize": 256, "maxEpochs": 1}


def default_shape_pair(name: str = "btc-usdt", **spec: Any) -> CurrencyPair:
    """tests.fixtures.models.small_pair with the default model's shape, trained 1 epoch on 365 days (the data roles
    of a 120-candle window need more than small_pair's 60) with the point and range gates opened: a benchmark of
    serving needs the model's cost, not its skill (promote it with `store.promote` when the baseline stays)."""
    from tests.fixtures.models import small_pair

    promotion = {"maxRelativeMAE": 10, "coverageTolerance": 0.5}
    spec = {"lookbackDays": 365, **spec}
    return small_pair(name, model={**DEFAULT_SHAPE, **spec.pop("model", {})}, promotion=promotion, **spec)


# --- timing and tables ---------------------------------------------------------------------------------------------


def timings(call: Callable[[], T], count: int, warmup: int = 0) -> tuple[list[float], T]:
    """Wall seconds of `count` calls after `warmup` unmeasured ones, and what the last call returned."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - began)
    return times, result


def share(score: Mapping[str, Any] | None, key: str = "accuracy") -> str:
    """A share with its 95% Wilson interval, as metadata.json records one (directional accuracy, a range's
    coverage): `54.7% [53.1%, 56.2%]`, or n/a where there is none."""
    if not score or score.get(key) is None:
        return "n/a"
    return f"{score[key]:.1%} [{score['wilsonLow']:.1%}, {score['wilsonHigh']:.1%}]"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A markdown table; `align` has one letter a column, `l` or `r` (missing ones: no alignment)."""
    marks = {"l": "---", "r": "---:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(marks.get(a, "---") for a in align.ljust(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the results writer --------------------------------------------------------------------------------------------


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def software(*names: str) -> str:
    """`name version` of each installed distribution, for the record."""
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def commit() -> str:
    """The checkout's commit, `+dirty` when its code differs from it (results files do not count: a benchmark
    run just before this one wrote one)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", ".", ":(exclude)bench/results").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def results_path(script: Path, name: str | None = None) -> Path:
    """bench/[sub/]name_bench.py (or _probe) -> bench/results/[sub/]name.md, or [sub/]`name`.md where given"""
    relative = script.resolve().relative_to(BENCH)
    name = name or re.sub(r"_(bench|probe)$", "", relative.stem)
    return RESULTS / relative.parent / f"{name}.md"


def _shown(value: object) -> str:
    """A setting as the record shows it: floats without trailing zeros, paths in this checkout relative to it."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Path) and value.resolve().is_relative_to(REPO):
        return str(value.resolve().relative_to(REPO))
    return str(value)


def settings_line(values: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={_shown(value)}" for key, value in values.items())


@dataclass
class Run:
    """One run of a benchmark: what it was started with, where and when; `finish` records it."""

    script: Path
    args: argparse.Namespace
    command: str
    commit: str
    began: datetime
    load_before: tuple[float, float, float]
    results: str | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(
        cls, parser: argparse.ArgumentParser, script: str, argv: Sequence[str] | None = None, results: str | None = None
    ) -> Run:
        """Parse the arguments (adding `--write`) and note the command, the commit, the time and the load;
        `results` names the results file where the script's name does not."""
        path = Path(script).resolve()
        parser.add_argument(
            "--write",
            action="store_true",
            help=f"record the results in {results_path(path, results).relative_to(REPO)}",
        )
        typed = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(typed)
        command = shlex.join(["python", str(path.relative_to(REPO)), *typed])
        return cls(path, args, command, commit(), datetime.now(UTC), load_average(), results)

    @property
    def path(self) -> Path:
        return results_path(self.script, self.results)

    def finish(self, body: str, **how: Any) -> None:
        """Print `body`; with --write, record it (`how`: the keywords of `record`)."""
        print(body)
        if self.args.write:
            self.record(body, **how)
            print(f"\nrecorded in {self.path.relative_to(REPO)}")

    def header(self, notes: Iterable[str], settings: Mapping[str, object] | None, versions: Iterable[str]) -> str:
        seconds = time.monotonic() - self.started
        load = "; load average (1, 5, 15 min) {} before, {} after".format(
            *(" ".join(f"{x:.2f}" for x in load) for load in (self.load_before, load_average()))
        )
        arguments = {k: v for k, v in vars(self.args).items() if k != "write"}
        lines = [
            f"Command: `{self.command}`",
            f"Commit: {self.commit}",
            f"Date: {self.began:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} min from start to record",
            f"Arguments (defaults included): {settings_line(arguments) or 'none'}",
        ]
        if settings:
            lines.append(f"Settings: {settings_line(settings)}")
        lines.append(
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()}{load}"
        )
        names = list(versions)
        if names:
            lines.append(f"Software: {software(*names)}")
        return "\n".join(f"- {line}" for line in [*lines, *notes])

    def record(
        self,
        body: str,
        *,
        title: str,
        part: str | None = None,
        level: int = 2,
        notes: Iterable[str] = (),
        settings: Mapping[str, object] | None = None,
        versions: Iterable[str] = (),
    ) -> None:
        """Write the run's header and `body` between this script's marks (for `part`, a section of its own
        headed `part` at heading `level`), replacing what stood between them; text outside the marks stays. A
        file with no marks at all was written whole by the script before the marks existed: it is written anew."""
        label = str(self.script.relative_to(REPO)) + (f": {part}" if part else "")
        begin, end = f"<!-- begin {label} -->", f"<!-- end {label} -->"
        heading = f"{'#' * level} {part}\n\n" if part else ""
        block = f"{begin}\n{heading}{self.header(notes, settings, versions)}\n\n{body.strip()}\n{end}"
        path = self.path
        text = path.read_text() if path.exists() else ""
        if begin in text and end in text:
            before, _, rest = text.partition(begin)
            text = before + block + rest.partition(end)[2]
        elif "<!-- begin " in text:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        else:
            text = f"# {title}\n\n{block}\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
