"""The track record: every forecast the served models make at each candle close, scored once the candle it
forecast has closed, summarised per window in track.json and exported as Prometheus metrics.

    decide     what a round decides for a pair, without I/O: the due origins, ask, wait or gap, the window
    rows       the rows of forecasts and gaps, appended and scored (pure, over pandas frames)
    summary    track.json's windows from the rows, scored like the test split
    tracker    the loop around them: one round per candle close over every pair
    shards     the pairs shared out over worker processes
    replay     `--replay`: the past filled by the stored ONNX file, never counted live
    metrics    /metrics and /healthz
    settings, cli   `makeusrich track`

The files' layout and the rows' schema are the store's (makeusrich.store.track, makeusrich.store.track_schema);
the Degraded rule is the scoring layer's (makeusrich.scoring.live). makeusrich.cli takes `add_track_command`.
"""

from makeusrich.track.cli import add_track_command

__all__ = ["add_track_command"]
