"""The trainer (torch's one room): one training run of `makeusrich train`, and the walk-forward backtest.

    features     stationary features from raw candles, scalers fitted on training hours only
    model, train the LSTM with its quantile head, and its training loop with early stopping
    export       the ONNX file with every normalisation inside the graph, and its parity with torch
    evaluation   the exported file measured as it will be served, next to every baseline; calibration
    promotion    the gates and the champion comparison
    metadata     metadata.json assembled from what a run measured and decided
    pipeline     one run: candles, training, evaluation, export, promotion, publishing
    recalibrate  new margins for the served LSTM on the newest held-out hours, without training
    backtest     the walk-forward replay of that run over past candles
    cli          `makeusrich train`, `makeusrich recalibrate` and `makeusrich backtest`

makeusrich.cli takes the `add_*_command` functions; torch is loaded only when one of the commands runs.
"""

from makeusrich.trainer.cli import add_backtest_command, add_recalibrate_command, add_train_command

__all__ = ["add_backtest_command", "add_recalibrate_command", "add_train_command"]
