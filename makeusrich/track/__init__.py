"""The track record: every forecast the served models make at each candle close, scored once the candle it
forecast has closed, summarised per window in track.json and exported as Prometheus metrics."""
