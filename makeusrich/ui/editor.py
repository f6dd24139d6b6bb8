"""Creating and editing a pair: one form over the same schema as the CRD, saved as a file or a resource."""

from __future__ import annotations

import asyncio
from typing import Any

from nicegui import ui

from makeusrich.errors import MakeUsRichError
from makeusrich.pair_sources import PairRecord
from makeusrich.ui.components import notice
from makeusrich.ui.forms import FIELDS, initial_values, validate_form
from makeusrich.ui.frame import Tab
from makeusrich.ui.login import gate
from makeusrich.ui.state import wait_loaded


async def new_pair(tab: Tab) -> None:
    if gate(tab):
        pair_form(tab, None)


async def edit_pair(tab: Tab, namespace: str, name: str) -> None:
    if not gate(tab):
        return
    await wait_loaded(tab.dashboard, 3.0)
    record = tab.dashboard.records.get(f"{namespace}/{name}")
    if record is None or record.pair is None:
        why = record.problem if record and record.problem else "There is no such pair."
        notice(f"Cannot edit {namespace}/{name}", why)
        return
    pair_form(tab, record)


def _field_input(kind: str, label: str, value: Any, options: tuple[str, ...]) -> Any:
    if kind == "select":
        return ui.select(list(options), value=value, label=label)
    if kind == "bool":
        return ui.switch(label, value=bool(value))
    if kind in ("int", "float"):
        return ui.number(label, value=value, precision=0 if kind == "int" else None)
    return ui.input(label, value="" if value is None else str(value))


def pair_form(tab: Tab, record: PairRecord | None) -> None:
    dash = tab.dashboard
    creating = record is None
    values = initial_values(record.pair if record else None, dash.source.fixed_namespace or "default")
    inputs: dict[str, Any] = {}
    ui.label("New pair" if creating else f"Edit {record.key if record else ''}").classes("text-2xl font-semibold")
    general = ui.column().classes("w-full")
    groups: dict[str, ui.element] = {}
    with ui.element("div").classes("w-full grid gap-4 grid-cols-1 lg:grid-cols-3"):
        for field in FIELDS:
            if field.group not in groups:
                with ui.card().classes("w-full gap-2"):
                    ui.label(field.group).classes("text-lg font-semibold")
                    groups[field.group] = ui.column().classes("w-full gap-1")
            with groups[field.group]:
                element = _field_input(field.kind, field.label, values.get(field.path), field.options)
                if field.kind != "bool":
                    element.props("outlined dense").classes("w-full")
                    if field.hint:
                        element.props["hint"] = field.hint
                fixed = (not creating and field.path in ("metadata.name", "metadata.namespace")) or (
                    field.path == "metadata.namespace" and dash.source.fixed_namespace is not None
                )
                if fixed:
                    element.disable()
                element.mark(f"field-{field.path}")
                inputs[field.path] = element

    async def save() -> None:
        if not tab.can_manage():
            ui.notify("Log in to change pairs", type="negative")
            return
        pair, errors = validate_form({path: element.value for path, element in inputs.items()})
        for path, element in inputs.items():
            if hasattr(element, "error"):
                element.error = errors.get(path)
        general.clear()
        if errors.get(""):
            with general:
                ui.label(errors[""]).classes("text-negative break-any").mark("form-error")
        if pair is None:
            ui.notify("Some fields need fixing", type="warning")
            return
        try:
            await dash.source.save(pair, create=creating, previous=record)
        except MakeUsRichError as exc:
            with general:
                ui.label(str(exc)).classes("text-negative break-any").mark("form-error")
            ui.notify("Not saved", type="negative")
            return
        ui.notify(f"Saved {pair.namespace}/{pair.name}", type="positive")
        dash.wake()
        await asyncio.sleep(0)
        ui.navigate.to(f"/pair/{pair.namespace}/{pair.name}" if not creating else "/")

    where = "as a CurrencyPair resource" if dash.source.kind == "kubernetes" else "as a pair file"
    with ui.row().classes("w-full items-center gap-2"):
        ui.button("Create" if creating else "Save", icon="save", on_click=save).props("no-caps").mark("save")
        back = "/" if creating or record is None else f"/pair/{record.namespace}/{record.name}"
        ui.button("Cancel", on_click=lambda: ui.navigate.to(back)).props("flat no-caps")
        ui.label(f"Saved {where}; the spec is checked by the same schema as the CRD.").classes("text-xs muted")
