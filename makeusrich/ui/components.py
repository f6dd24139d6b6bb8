"""Small pieces every page draws the same way: badges, labelled numbers, error lines."""

from __future__ import annotations

from typing import get_args

from nicegui import ui

from makeusrich.ui.format import Tone

TONE_COLOR: dict[Tone, str] = {tone: "grey-7" if tone == "neutral" else tone for tone in get_args(Tone)}
TONE_TEXT: dict[Tone, str] = {tone: "" if tone == "neutral" else f"text-{tone}" for tone in get_args(Tone)}


def badge(text: str, tone: Tone, tooltip: str = "") -> None:
    with ui.badge(text, color=TONE_COLOR[tone]).props("rounded").classes("px-2 py-1"):
        if tooltip:
            ui.tooltip(tooltip).classes("max-w-xs text-sm")


def stat(label: str, value: str, classes: str = "") -> None:
    with ui.column().classes("gap-0"):
        ui.label(label).classes("caps")
        ui.label(value).classes(f"tabular {classes}")


def error_line(text: str, marker: str) -> None:
    with ui.row().classes("w-full items-start gap-2 no-wrap text-negative").mark(marker):
        ui.icon("error_outline").classes("mt-1")
        ui.label(text).classes("break-any")


def notice(title: str, text: str) -> None:
    """A card saying why this page shows nothing, with the way back."""
    with ui.card().classes("w-full max-w-xl"):
        ui.label(title).classes("text-lg font-semibold")
        ui.label(text).classes("break-any")
        ui.link("Back to the pairs", "/")
