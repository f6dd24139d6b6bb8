"""A training run of `makeusrich up`, as the runner watches it: the trainer's JSON log lines read as they come (its
progress kept current in the run state), and how the run ended. Pure but for `follow`, which reads the pipe."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from makeusrich.contract import iso_z
from makeusrich.errors import StoreError
from makeusrich.store import ESTIMATOR_NAMES, MODEL_KINDS, PairStore, RunState, parse_metadata, write_run_state

LAST_LINES = 20


def log_entry(raw: str) -> dict[str, Any] | None:
    """A child's JSON log line as its fields; None for any other line (a traceback, the CLI's last sentence)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "message" in entry else None


def render_line(raw: str, entry: dict[str, Any] | None = None) -> str:
    """A child's log line as a person reads it ('warning candles ready summary=...'); others as they are.
    `entry` is the line already parsed by `log_entry`, when the caller has it."""
    entry = entry if entry is not None else log_entry(raw)
    if entry is None:
        return raw
    extra = " ".join(
        f"{k}={v}" for k, v in entry.items() if k not in ("time", "level", "logger", "message", "exception")
    )
    text = f"{entry.get('level', 'info')} {entry['message']}" + (f" {extra}" if extra else "")
    return text + (f"\n{entry['exception']}" if entry.get("exception") else "")


LINE_BYTES_KEPT = 8192
"""What is kept of one log line: a trainer line can carry a whole error page (a Binance 500 of 200 kB)."""


async def log_lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """A child's lines, each cut to LINE_BYTES_KEPT. A line longer than the reader's buffer (asyncio's readline
    raises on one, which stopped the runner reading and left the child blocked on its pipe) is read through in
    pieces: its head is kept with a mark, the rest dropped."""
    cut = False  # inside a line too long for the buffer, whose head was already given
    while True:
        try:
            line = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end, maybe after a last line without a newline
            if exc.partial and not cut:
                yield exc.partial[:LINE_BYTES_KEPT]
            return
        except asyncio.LimitOverrunError as exc:
            piece = await stream.readexactly(exc.consumed)
            if not cut:
                yield piece[:LINE_BYTES_KEPT] + b" [line cut]"
                cut = True
            continue
        if not cut:
            yield line[:LINE_BYTES_KEPT]
        cut = False


async def follow(
    process: asyncio.subprocess.Process,
    store: PairStore,
    state: RunState,
    lines: list[str],
    tail: deque[str],
    say: Callable[[str], None],
) -> RunState:
    """Read the trainer's log lines until it closes them, keeping the state's progress current in the store and
    saying each epoch and each warning on the terminal."""
    assert process.stderr is not None
    written = 0.0
    async for raw in log_lines(process.stderr):
        text = raw.decode(errors="replace").rstrip("\n")
        entry = log_entry(text)
        shown = render_line(text, entry)
        lines.append(shown)
        tail.append(shown)
        if entry is None:
            continue
        if entry.get("message") == "epoch done":
            state = state.model_copy(
                update={
                    "epoch": entry.get("epoch"),
                    "max_epochs": entry.get("max_epochs"),
                    "validation_loss": entry.get("validation_loss"),
                }
            )
            say(f"{store.pair}: epoch {state.epoch}/{state.max_epochs}, validation loss {state.validation_loss:.4f}")
            if time.monotonic() - written >= 1.0:
                written = time.monotonic()
                await asyncio.to_thread(write_run_state, store, state)
        elif entry.get("message") == "baseline served":
            say(
                f"{store.pair}: baseline version {entry.get('version')} served (persistence, "
                f"{ESTIMATOR_NAMES.get(str(entry.get('estimator')), 'a')} volatility ranges); the LSTM trains next "
                "and replaces it only through the gates"
            )
        elif entry.get("message") == "training starts":
            say(f"{store.pair}: the LSTM trains {entry.get('start')}")
        elif entry.get("level") in ("warning", "error") and entry.get("logger") != "makeusrich.market.binance":
            say(f"{store.pair}: {entry.get('message')}")
    return state


def outcome(
    state: RunState, code: int, out: bytes, tail: list[str], run_log: str, finished_at: datetime, stopped: bool
) -> RunState:
    """How a training run ended, from its exit status, what it printed and its last log lines: succeeded (and
    whether promoted), interrupted by a stop, or failed with the reason the trainer gave."""
    finished = {"finished_at": iso_z(finished_at), "last_lines": tail, "log": run_log}
    if code == 0:
        try:
            meta = parse_metadata(json.loads(out), "the metadata `makeusrich train --json` printed")
        except (ValueError, StoreError) as exc:
            return state.model_copy(update={**finished, "state": "failed", "message": f"training failed: {exc}"})
        ratio, judged = meta.promotion.judged_relative_mae, meta.promotion.judged_on
        skill = f" ({judged} MAE {ratio:.4f} of persistence's)" if ratio is not None else ""
        verdict = (
            f"{skill} promoted and served" if meta.promotion.promoted else f" not promoted: {meta.promotion.reason}"
        )
        trained = meta.training
        if trained.start is not None:
            verdict += f"; trained {trained.epochs} epoch(s) in {trained.seconds:.0f} s {trained.start}"
        return state.model_copy(
            update={
                **finished,
                "state": "succeeded",
                "version": meta.version,
                "promoted": meta.promotion.promoted,
                "source": meta.source,
                "message": f"{MODEL_KINDS[meta.kind]} version {meta.version}{verdict}",
            }
        )
    if stopped:
        return state.model_copy(
            update={
                **finished,
                "state": "interrupted",
                "message": "training stopped before it finished; the served model is unchanged",
            }
        )
    said = next((line for line in reversed(tail) if line.startswith("makeusrich train:")), None)
    if said:
        reason = said.removeprefix("makeusrich train:").strip()
    elif code < 0:  # nobody asked it to stop: the kernel's out-of-memory killer, most often
        reason = f"it was killed by signal {-code} ({signal.Signals(-code).name}; out of memory?)"
    else:
        reason = f"exit status {code}"
    return state.model_copy(
        update={
            **finished,
            "state": "failed",
            "message": f"training failed: {reason}; tried again at the next scheduled time",
        }
    )
