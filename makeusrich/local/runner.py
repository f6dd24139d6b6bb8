"""`makeusrich up`: what the cluster runs, on one machine, from the same pair files.

The runner is a small supervisor. It starts the v2 model server (`makeusrich serve`, which loads each newly
promoted version by itself), the tracker (`makeusrich track`) and the dashboard (`makeusrich ui` on the pair
files) as child processes, scans
the pair files every few seconds, and runs `makeusrich train` (the command the CronJob runs) for each pair
when `schedule.due_at` says so, at most `max_trainings` at once and never two for one pair. Each run's
progress and outcome go to `runs/state.json` and its log to `runs/<start>.log` below the pair in the store,
where the dashboard reads them. Children die with the runner (PR_SET_PDEATHSIG), and a stop (Ctrl-C,
SIGTERM) ends them all within `STOP_S` seconds; a training stopped half-way leaves the store as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import httpx

from makeusrich.contract import iso_z
from makeusrich.errors import MakeUsRichError, StoreError
from makeusrich.local.schedule import due_at, retrain_when_degraded, spec_sha256
from makeusrich.local.training import LAST_LINES, follow, outcome, render_line
from makeusrich.net import check_free
from makeusrich.pair import CurrencyPair, LiveStatus, read_pair_files
from makeusrich.scoring import RANGES_TOO_NARROW, degraded_since, degraded_verdict, live_status
from makeusrich.store import (
    Latest,
    PairStore,
    RunState,
    TrackFiles,
    pair_store,
    read_run_state,
    write_run_log,
    write_run_state,
)

log = logging.getLogger(__name__)

STOP_S = 8.0  # a stop kills what is still running after this long: Ctrl-C ends within 10 s
BUNDLED_PAIR = "btc-usdt.yaml"


@dataclass(frozen=True)
class UpPlan:
    """What one `makeusrich up` runs (from its settings)."""

    pairs_dir: Path
    files: tuple[Path, ...]
    store: str
    source: str
    host: str
    port: int
    serving_port: int
    max_trainings: int
    scan_seconds: float
    track_port: int = 8082
    train_args: tuple[str, ...] = ()  # extra `makeusrich train` flags (--max-epochs, --lookback-days)
    first_lookback_days: int = 0  # a pair's first run reads at most this many days (0: its lookbackDays)
    logs_dir: Path = Path(".makeusrich/logs")

    @property
    def dashboard_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def serving_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.serving_port}"

    @property
    def track_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.track_port}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def seed_pairs(folder: Path) -> bool:
    """Create the pairs folder with the bundled example on a first run; True when it did."""
    if folder.exists():
        return False
    folder.mkdir(parents=True)
    bundled = resources.files("makeusrich.local") / BUNDLED_PAIR
    (folder / BUNDLED_PAIR).write_bytes(bundled.read_bytes())
    return True


# Looked up once, here: after a fork, in a process with threads, loading libraries could deadlock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """Run in each child before exec: Linux sends it SIGTERM when the runner dies, even by SIGKILL. And SIGINT
    back to its default: a runner started in the background by a script inherits SIGINT ignored, and a trainer
    that ignores the stop's SIGINT would run on until it is killed."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "makeusrich.cli", *args]


def _live(store: PairStore) -> LiveStatus | None:
    """The pair's live record as the operator reads it, or None (none yet, or unreadable: the tracker rewrites it)."""
    try:
        summary = TrackFiles(store).read_summary()
    except StoreError:
        return None
    return live_status(summary) if summary is not None else None


@dataclass
class PairSlot:
    """What the runner knows of one pair between scans."""

    path: Path
    pair: CurrencyPair
    task: asyncio.Task[None] | None = None
    told: str = ""  # the last thing said about it, so that the terminal is not told twice
    ran: RunState | None = None  # a run that could not even record itself (the store refused state.json)
    change_seen: str | None = None  # when the newest change of the served version said was made


@dataclass
class Runner:
    plan: UpPlan
    say: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.stopping = asyncio.Event()
        self.slots = asyncio.Semaphore(self.plan.max_trainings)
        self.pairs: dict[str, PairSlot] = {}
        self.problems: dict[Path, str] = {}
        # Every running child, with the signal that stops it cleanly: SIGINT for a training (as Ctrl-C), SIGTERM
        # for a server.
        self.children: dict[asyncio.subprocess.Process, signal.Signals] = {}
        self.servers: dict[str, asyncio.subprocess.Process] = {}

    # --- children ----------------------------------------------------------------------------------------

    async def _spawn(
        self, args: Sequence[str], stop_with: signal.Signals, **kwargs: object
    ) -> asyncio.subprocess.Process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *command(*args),
            env=env,
            preexec_fn=_die_with_parent,
            **kwargs,  # type: ignore[arg-type]
        )
        self.children[process] = stop_with
        if self.stopping.is_set():  # the stop began while it was starting: it gets what the others got
            process.send_signal(stop_with)
        return process

    async def _start_servers(self) -> None:
        """The model server, then the tracker and the dashboard once the server answers (so that their first
        look finds it up)."""
        plan = self.plan
        plan.logs_dir.mkdir(parents=True, exist_ok=True)
        common = ("--store", plan.store, "--host", plan.host)
        pairs = (
            *("--pairs-dir", str(plan.pairs_dir), "--server-url", plan.serving_url, "--source", plan.source),
            *(("--pair-files", ",".join(map(str, plan.files))) if plan.files else ()),
        )
        serve = ("serve", *common, "--port", str(plan.serving_port), "--poll-seconds", "2", "--all-namespaces")
        track = ("track", *common, "--port", str(plan.track_port), *pairs)
        ui = ("ui", *common, "--port", str(plan.port), "--refresh-seconds", "5", *pairs)
        await self._start("serve", serve, f"{plan.serving_url}/v2/health/live")
        await self._start("track", track, f"{plan.track_url}/healthz")
        await self._start("ui", ui, f"{plan.dashboard_url}/healthz")

    async def _start(self, name: str, args: Sequence[str], health_url: str, timeout_s: float = 120.0) -> None:
        """Start a server and wait until it answers; one that exits first, or never answers, is the error."""
        if self.stopping.is_set():
            return
        with open(self.plan.logs_dir / f"{name}.log", "ab") as sink:
            process = await self._spawn(
                ("--log-json", *args), signal.SIGTERM, stdout=sink, stderr=asyncio.subprocess.STDOUT
            )
        self.servers[name] = process
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not await self._stopped_within(0.1):
                if process.returncode is not None:
                    raise MakeUsRichError(self._died(name))
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(health_url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise MakeUsRichError(f"makeusrich {name} did not answer within {timeout_s:.0f} s; see {sink.name}")

    def _died(self, name: str) -> str:
        path = self.plan.logs_dir / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines()[-5:] if path.exists() else []
        tail = "; ".join(render_line(line) for line in lines)
        return f"makeusrich {name} stopped (exit status {self.servers[name].returncode}): {tail or 'no output'}"

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    # --- pairs -------------------------------------------------------------------------------------------

    def _scan(self) -> dict[str, tuple[Path, CurrencyPair]]:
        """The valid pairs by namespace/name; each new problem of a pair file is said once."""
        files = read_pair_files(self.plan.pairs_dir, self.plan.files)
        problems = {found.path: found.problem for found in files if found.problem}
        for path, problem in problems.items():
            if self.problems.get(path) != problem:
                self.say(f"{path.name}: {problem}")
        self.problems = problems
        return {f"{f.pair.namespace}/{f.pair.name}": (f.path, f.pair) for f in files if f.pair is not None}

    def _store(self, pair: CurrencyPair) -> PairStore:
        return pair_store(self.plan.store, pair.namespace, pair.name)

    async def _plan_pair(self, slot: PairSlot) -> None:
        """Start the pair's training when it is due and not running."""
        if slot.task is not None and not slot.task.done():
            return
        store = self._store(slot.pair)
        watch = slot.pair.spec.promotion.retrain_when_degraded  # track.json is read only for a pair that acts on it
        try:  # small reads, off the event loop: on S3 they take a round trip each
            latest, last, live = await asyncio.to_thread(
                lambda: (store.latest(), read_run_state(store), _live(store) if watch else None)
            )
        except StoreError as exc:
            self._tell(slot, f"{slot.pair.name}: {exc}")
            return
        self._say_rollback(slot, latest)
        if slot.ran is not None and (last is None or slot.ran.started_at > last.started_at):
            last = slot.ran
        now = self.clock()
        if last is not None and last.state == "training" and slot.ran is None:
            last = await self._close_orphan(slot, store, last, now)
        due = due_at(slot.pair, latest.version if latest else None, last, now)
        if due is None:
            self._tell(slot, f"{slot.pair.name}: suspended (spec.suspend); not trained")
        elif due <= now:
            why = "no model yet" if latest is None else "scheduled"
            slot.task = asyncio.create_task(self._train(slot, why))
        elif retrain_when_degraded(slot.pair, degraded_since(live), last):
            _, reason, said = degraded_verdict(live)
            why = f"Degraded since {degraded_since(live)}: {said}"
            recalibrate = ("--recalibrate-first",) if reason == RANGES_TOO_NARROW else ()  # new margins may do
            slot.task = asyncio.create_task(self._train(slot, why, recalibrate))
        else:
            self._tell(slot, f"{slot.pair.name}: next training {due:%Y-%m-%d %H:%M} UTC ({slot.pair.spec.schedule})")

    def _say_rollback(self, slot: PairSlot, latest: Latest | None) -> None:
        """One line when the served version was rolled back (by the tracker's evidence), once per rollback."""
        change = latest.change if latest is not None else None
        if change is None or change.action != "rolled-back" or change.at == slot.change_seen:
            return
        slot.change_seen = change.at
        self.say(
            f"{slot.pair.name}: rolled back from {change.from_} to {change.version} by {change.by} ({change.reason})"
        )

    async def _close_orphan(self, slot: PairSlot, store: PairStore, last: RunState, now: datetime) -> RunState:
        """A run still "training" that this runner never started was cut off with an earlier runner (killed, or
        the machine stopped): say so in the store, or the card shows it training until the next schedule."""
        closed = last.model_copy(
            update={
                "state": "interrupted",
                "finished_at": iso_z(now),
                "message": "cut off when an earlier makeusrich up stopped before it ended; the served model is "
                "unchanged",
            }
        )
        try:
            await asyncio.to_thread(write_run_state, store, closed)
        except StoreError as exc:
            self._tell(slot, f"{slot.pair.name}: {exc}")
        return closed

    def _tell(self, slot: PairSlot, text: str) -> None:
        if slot.told != text:
            slot.told = text
            self.say(text)

    async def _scan_and_plan(self) -> None:
        found = await asyncio.to_thread(self._scan)
        for key in [key for key in self.pairs if key not in found]:
            slot = self.pairs[key]
            if slot.task is not None and not slot.task.done():
                continue  # its training finishes first: a file fixed meanwhile must not start a second one
            del self.pairs[key]
            if slot.path.exists():
                self.say(f"{slot.pair.name}: {slot.path.name} no longer validates; not trained until it does")
            else:
                self.say(f"{slot.pair.name}: its file is gone; no longer trained (its models stay in the store)")
        for key, (path, pair) in found.items():
            known = self.pairs.get(key)
            if known is None:
                known = self.pairs[key] = PairSlot(path, pair)
            elif known.pair != pair:
                known.path, known.pair, known.told = path, pair, ""
            await self._plan_pair(known)

    # --- one training ------------------------------------------------------------------------------------

    async def _train(self, slot: PairSlot, why: str, tries_first: tuple[str, ...] = ()) -> None:
        """One run, whatever happens: a failure to even start it (the store refuses state.json, the disk is
        full) is said and counts as a failed run, so it is not retried every scan. `tries_first`: the trainer's
        flags for what it tries before training (a recalibration)."""
        try:
            await self._run_training(slot, why, tries_first)
        except Exception as exc:
            log.exception("training %s could not run", slot.pair.name)
            slot.ran = RunState(
                state="failed",
                started_at=iso_z(self.clock()),
                spec_sha256=spec_sha256(slot.pair),
                message=f"training could not run: {exc}",
            )
            self.say(f"{slot.pair.name}: training could not run: {exc}; tried again at the next scheduled time")

    async def _run_training(self, slot: PairSlot, why: str, tries_first: tuple[str, ...] = ()) -> None:
        pair, path = slot.pair, slot.path
        async with self.slots:
            if self.stopping.is_set():
                return
            store = self._store(pair)
            started = self.clock()
            state = RunState(state="training", started_at=iso_z(started), spec_sha256=spec_sha256(pair))
            run_log = f"{started:%Y%m%dT%H%M%SZ}.log"
            first = self.plan.first_lookback_days
            shorter: tuple[str, ...] = ()
            if why == "no model yet" and 0 < first < pair.spec.lookback_days:
                shorter = ("--lookback-days", str(first))
                why += f"; a first model on {first} days, then {pair.spec.lookback_days} days on the schedule"
            self.say(f"{pair.name}: training ({why})")
            await asyncio.to_thread(write_run_state, store, state)
            if self.stopping.is_set():
                await asyncio.to_thread(write_run_state, store, state.model_copy(update={"state": "interrupted"}))
                return
            args = (
                "--log-json",
                "train",
                "-f",
                str(path),
                "--store",
                self.plan.store,
                "--source",
                self.plan.source,
                "--json",
                *self.plan.train_args,
                *shorter,
                *tries_first,
            )
            pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
            process = await self._spawn(args, signal.SIGINT, **pipes)
            lines: list[str] = []
            tail: deque[str] = deque(maxlen=LAST_LINES)
            assert process.stdout is not None
            out = asyncio.create_task(process.stdout.read())  # read beside the log: a full pipe would block it
            state = await follow(process, store, state, lines, tail, self.say)
            code = await process.wait()
            self.children.pop(process, None)
            state = outcome(state, code, await out, list(tail), run_log, self.clock(), self.stopping.is_set())
            await asyncio.to_thread(write_run_log, store, run_log, "\n".join(lines) + "\n")
            await asyncio.to_thread(write_run_state, store, state)
            self.say(f"{pair.name}: {state.message}")

    # --- the whole ---------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            await self._start_servers()
            if not self.stopping.is_set():
                self.say(f"Dashboard:   {self.plan.dashboard_url}")
                self.say(
                    f"v2 endpoint: {self.plan.serving_url}/v2/models/<pair>/infer (<namespace>.<pair> outside default)"
                )
                self.say(f"Track:       {self.plan.track_url}/metrics")
            while not self.stopping.is_set():
                for name, process in self.servers.items():
                    if process.returncode is not None:
                        raise MakeUsRichError(self._died(name))
                await self._scan_and_plan()
                await self._stopped_within(self.plan.scan_seconds)
        finally:
            await self._stop()
        return 0

    async def _stop(self) -> None:
        """Stop every child: trainings with SIGINT (as Ctrl-C does), the servers with SIGTERM; what still runs
        after STOP_S is killed."""
        self.stopping.set()
        # A copy: trainings remove themselves from the set as they end. One that starts from now on is
        # signalled by _spawn, since `stopping` is set.
        for process, stop_with in list(self.children.items()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(stop_with)
        tasks = [slot.task for slot in self.pairs.values() if slot.task is not None]
        waits = [*tasks, *(asyncio.create_task(process.wait()) for process in list(self.children))]
        if waits:
            await asyncio.wait(waits, timeout=STOP_S)
        stragglers = list(self.children)
        for process in stragglers:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await asyncio.gather(*(process.wait() for process in stragglers))
        if tasks:  # each training records how it ended (interrupted) once its process is gone
            await asyncio.wait(tasks, timeout=2.0)


def check_ports(plan: UpPlan) -> None:
    check_free(plan.host, plan.port, "--port")
    check_free(plan.host, plan.serving_port, "--serving-port")
    check_free(plan.host, plan.track_port, "--track-port")
