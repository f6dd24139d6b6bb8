"""What the quantile head costs: training steps and ONNX inference with the default five levels against a
head with the median alone (levels [0.5]: the point forecast and nothing else), same LSTM, same data shapes.

The two arms run interleaved, `--rounds` times each, and the medians are compared, so that other load on the
machine falls on both alike.

An experiment (answered when the quantile head was adopted), kept so that its cost can be measured again.

    python bench/experiments/quantile_cost.py [--rounds 5] [--write]

`--write` records the table, the command, the commit and the date in bench/results/experiments/quantile_cost.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _harness
import numpy as np
import torch

from makeusrich.onnxrt import onnx_session
from makeusrich.scoring import ranges
from makeusrich.trainer.export import export_onnx
from makeusrich.trainer.features import N_FEATURES, Scaler
from makeusrich.trainer.model import Forecaster, LSTMCore
from makeusrich.trainer.train import pinball

WINDOW, HIDDEN, LAYERS, BATCH, STEPS = 120, 64, 2, 256, 30


def arm(levels: list[float]) -> tuple[LSTMCore, bytes]:
    torch.manual_seed(0)
    core = LSTMCore(HIDDEN, LAYERS, 0.2, 1, len(levels), levels.index(0.5))
    features, flat = Scaler(np.zeros(N_FEATURES), np.full(N_FEATURES, 0.01)), Scaler(np.zeros(1), np.full(1, 0.01))
    forecaster = Forecaster(core, features, flat, ranges.Har((1, 24, WINDOW - 1), 1e-7, np.zeros(5)))
    return core, export_onnx(forecaster, WINDOW)


def train_seconds(core: LSTMCore, levels: list[float]) -> float:
    """Seconds per optimisation step on a batch of the default size."""
    optimiser = torch.optim.AdamW(core.parameters(), lr=1e-3)
    tau = torch.tensor(levels)
    x, y = torch.randn(BATCH, WINDOW - 1, N_FEATURES), torch.randn(BATCH, 1)
    core.train()
    started = time.perf_counter()
    for _ in range(STEPS):
        optimiser.zero_grad()
        loss = pinball(core(x), y, tau)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return (time.perf_counter() - started) / STEPS


def infer_ms(model: bytes, batch: int) -> float:
    session = onnx_session(model, 1)
    candles = np.abs(np.random.default_rng(0).normal(100, 1, (batch, WINDOW, 5))).astype(np.float32)
    session.run(None, {"candles": candles})
    runs = 200 if batch == 1 else 20
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, {"candles": candles})
    return (time.perf_counter() - started) / runs * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    run = _harness.Run.start(parser, __file__, argv)
    torch.set_num_threads(2)
    arms = {"median only [0.5]": [0.5], "five levels (default)": [0.05, 0.25, 0.5, 0.75, 0.95]}
    built = {name: arm(levels) for name, levels in arms.items()}
    found: dict[str, dict[str, list[float]]] = {name: {"train": [], "b1": [], "b256": []} for name in arms}
    for _ in range(run.args.rounds):
        for name, levels in arms.items():
            core, model = built[name]
            found[name]["train"].append(train_seconds(core, levels) * 1000)
            found[name]["b1"].append(infer_ms(model, 1))
            found[name]["b256"].append(infer_ms(model, 256))
    rows = []
    for name in arms:
        medians = [statistics.median(found[name][key]) for key in ("train", "b1", "b256")]
        size = len(built[name][1])
        rows.append([name, f"{medians[0]:.1f}", f"{medians[1]:.3f}", f"{medians[2]:.2f}", f"{size:,} bytes"])
    header = ["head", "training step, batch 256 (ms)", "ONNX, 1 window (ms)", "ONNX, 256 windows (ms)", "model.onnx"]
    run.finish(
        _harness.table(header, rows),
        title="What the quantile head costs",
        settings={
            "window": WINDOW,
            "hiddenSize": HIDDEN,
            "layers": LAYERS,
            "batch": BATCH,
            "stepsPerRound": STEPS,
            "torchThreads": 2,
            "onnxruntimeThreads": 1,
        },
        versions=("torch", "onnxruntime"),
        notes=[
            "Medians over interleaved rounds: the LSTM (window 120, 2 layers of 64) with a head of five quantile "
            "levels against the same LSTM with the median alone.",
        ],
    )


if __name__ == "__main__":
    main()
