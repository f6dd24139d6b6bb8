"""The NiceGUI dashboard (`makeusrich ui`): prices, forecasts and each model's measured skill.

Modules: `view` (pure formatting, verdicts, badges, the card's HTML), `forms` (the pair form, validated by the
CurrencyPair model), `data` (pair sources: files or Kubernetes; the store; candles), `kube` (a small API client),
`backtest` (the test split re-run through the served model), `state` (the shared refresh loop), `charts`
(ECharts options), `auth` (password hash and login throttle), `pages` (NiceGUI), `app` and `cli`.
Importing this package imports neither NiceGUI nor the trainer's torch.
"""
