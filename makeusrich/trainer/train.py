"""The training loop: pinball loss, AdamW, early stopping on validation loss, best weights restored,
deterministic on CPU."""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from makeusrich.contract import median_index
from makeusrich.pair import ModelSpec
from makeusrich.trainer.features import Prepared
from makeusrich.trainer.model import LSTMCore

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    validation_loss: float
    seconds: float


@dataclass
class TrainingResult:
    core: LSTMCore
    best_epoch: int
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    device: str = "cpu"
    warm: bool = False  # started from stored weights; best_epoch 0 then means they were kept as they were


def usable_cpus() -> int:
    """The CPUs this process may run on (affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def configure_threads() -> int:
    """Use the CPUs this process may run on, at most 8: LSTM steps scale no further."""
    threads = max(1, min(usable_cpus(), 8))
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def predict_standardised(
    core: LSTMCore, data: Prepared, origins: np.ndarray, device: torch.device, batch_size: int = 2048
) -> np.ndarray:
    """Model outputs (quantiles of standardised targets, [n, h, levels]) for origins, batch by batch so windows
    are never all copied."""
    core.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(origins), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(data.inputs(origins[start : start + batch_size])))
            out.append(core(batch.to(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, data.horizon, core.levels), dtype=np.float32)


def pinball(predicted: torch.Tensor, actual: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss of quantiles [B, h, L] for targets [B, h]: the median's share is half the absolute
    error, so the point forecast is trained for MAE, and every other level for its own quantile."""
    diff = actual[:, :, None] - predicted
    return torch.mean(torch.maximum(levels * diff, (levels - 1.0) * diff))


MIN_IMPROVEMENT = 1e-3
"""Relative fall of the validation loss that counts as an improvement for early stopping. The pinball loss keeps
creeping down by hundredths of a percent for dozens of epochs; that is noise on a validation split, and waiting
for it would double a training run's time."""

WARM_PATIENCE = 1
"""Epochs without improvement before a warm-started run stops: its weights start where yesterday's run converged,
so one epoch that does not improve them says the new hours hold nothing more to learn."""

Progress = Callable[[EpochRecord, int], None]


def log_progress(record: EpochRecord, max_epochs: int) -> None:
    """One line per epoch: a rewriting line on a terminal, a structured log line otherwise."""
    text = (
        f"epoch {record.epoch}/{max_epochs} train {record.train_loss:.4f} "
        f"validation {record.validation_loss:.4f} ({record.seconds:.1f}s)"
    )
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text.ljust(70))
        sys.stderr.flush()
    else:
        log.info("epoch done", extra={**asdict(record), "max_epochs": max_epochs})


def train(
    data: Prepared,
    spec: ModelSpec,
    progress: Progress | None = log_progress,
    start: dict[str, torch.Tensor] | None = None,
) -> TrainingResult:
    """Fit an LSTMCore on the training split, stopping when validation loss stops improving. From `start`
    (stored weights, makeusrich.trainer.warm) the starting weights' validation loss is the one to beat, and
    WARM_PATIENCE epochs without improvement stop the run."""
    started = time.perf_counter()
    seed_everything(spec.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    median = median_index(spec.quantiles)
    core = LSTMCore(spec.hidden_size, spec.layers, spec.dropout, data.horizon, len(spec.quantiles), median)
    if start is not None:
        core.load_state_dict(start)
    core = core.to(device)
    optimiser = torch.optim.AdamW(core.parameters(), lr=spec.learning_rate)
    levels = torch.tensor(spec.quantiles, dtype=torch.float32, device=device)

    def loss_fn(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
        return pinball(predicted, actual, levels.to(predicted.device))

    generator = np.random.default_rng(spec.seed)
    train_origins, validation = data.split.train, data.split.validation

    def validation_loss() -> float:
        predicted = torch.from_numpy(predict_standardised(core, data, validation, device))
        return float(loss_fn(predicted, torch.from_numpy(data.targets[validation])))

    # From stored weights, they are the ones to beat; from the seed, anything beats nothing.
    best_loss = math.inf if start is None else validation_loss()
    best_epoch, best_state = 0, copy.deepcopy(core.state_dict())
    result = TrainingResult(core=core, best_epoch=0, device=str(device), warm=start is not None)
    patience = spec.patience if start is None else WARM_PATIENCE
    stale = 0
    for epoch in range(1, spec.max_epochs + 1):
        epoch_start = time.perf_counter()
        core.train()
        order = generator.permutation(train_origins)
        total, count = 0.0, 0
        for first in range(0, len(order), spec.batch_size):
            batch = order[first : first + spec.batch_size]
            x = torch.from_numpy(np.ascontiguousarray(data.inputs(batch))).to(device)
            y = torch.from_numpy(data.targets[batch]).to(device)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(core(x), y)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            nn.utils.clip_grad_norm_(core.parameters(), 1.0)
            optimiser.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        loss_now = validation_loss()
        record = EpochRecord(epoch, total / max(count, 1), loss_now, time.perf_counter() - epoch_start)
        result.epochs.append(record)
        if progress:
            progress(record, spec.max_epochs)
        if loss_now < best_loss * (1.0 - MIN_IMPROVEMENT):
            best_loss, best_epoch, stale = loss_now, epoch, 0
            best_state = copy.deepcopy(core.state_dict())
        else:
            stale += 1
            if stale >= patience:
                result.stopped_early = True
                break
    if progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    core.load_state_dict(best_state)
    core.eval()
    result.best_epoch = best_epoch
    result.seconds = time.perf_counter() - started
    return result
