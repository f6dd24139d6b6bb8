"""The NiceGUI dashboard (`makeusrich ui`): prices, forecasts and each model's measured skill.

Pure modules, tested without a browser: `view` (formatting, verdicts, badges, the card's HTML), `forms` (the pair
form, validated by the CurrencyPair model), `charts` (ECharts options), `backtest` (the test split re-run through
the served model), `auth` (password hash, session token, login throttle). Around them: `data` (pair sources:
files or Kubernetes), `state` (the shared refresh loop and `build_state`, the pure card builder). NiceGUI pages:
`frame` (header, per-tab state), `components`, one module per page (`overview`, `pair_page`, `editor`, `login`),
`root` (the routes), styles in `static/dashboard.css`; `app` and `cli` start it. Importing this package imports
neither NiceGUI nor the trainer's torch.
"""
