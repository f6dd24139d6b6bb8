"""The NiceGUI dashboard (`makeusrich ui`): prices, forecasts and each model's measured skill.

Pure modules, tested without a browser: `card` (a card's state, and `build_state`, which makes it from one
refresh), `format` (numbers, times and skill in words), `badges` (what a card says: badges, staleness, the live
line, the overview's order), `card_html` (the card as one HTML string), `tables` (the pair page's tables),
`track` (the track record's table and series), `forms` (the pair form, validated by the CurrencyPair model),
`charts` (ECharts options), `backtest` (the test split re-run through the served model), `auth` (password hash,
session token, login throttle). Around them: `state` (the one refresh loop for all browsers). NiceGUI pages:
`frame` (header, per-tab state), `components`, one module per page (`overview`, `pair_page` with its `evidence`
sections, `editor`, `login`), `root` (the routes), styles in `static/dashboard.css`; `app` and `cli` start it.
Importing this package imports neither NiceGUI nor the trainer's torch; makeusrich.cli takes `add_ui_commands`.
"""

from makeusrich.ui.cli import add_ui_commands

__all__ = ["add_ui_commands"]
