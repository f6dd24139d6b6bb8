"""The page NiceGUI serves for every browser tab: the frame, with one route per page module."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from makeusrich.ui import editor, login, overview, pair_page
from makeusrich.ui.frame import Pages, Tab


def make_root(pages: Pages) -> Callable[[], None]:
    def root() -> None:
        tab = Tab(pages)
        tab.build(
            {
                "/": partial(overview.page, tab),
                "/pair/{namespace}/{name}": partial(pair_page.page, tab),
                "/new": partial(editor.new_pair, tab),
                "/edit/{namespace}/{name}": partial(editor.edit_pair, tab),
                "/login": partial(login.page, tab),
            }
        )

    return root
