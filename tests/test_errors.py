"""The error tree drawn in makeusrich.errors' docstring is the tree of its classes: a class added, moved or
removed without its line (or a line left for a class that is gone) fails here."""

from __future__ import annotations

import inspect
import re

import pytest

from makeusrich import errors
from makeusrich.errors import MakeUsRichError

LINE = re.compile(r"^    (?P<indent>(?:│   |    )*)(?P<branch>├── |└── )?(?P<name>[A-Z][A-Za-z]+)\s{2,}\S")


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Each class the docstring draws, with the class it hangs under (None for the root)."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in doc.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) // 4 + (1 if match["branch"] else 0)
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def real_tree() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, MakeUsRichError) and cls.__module__ == errors.__name__:
            base = cls.__bases__[0]
            found[name] = None if cls is MakeUsRichError else base.__name__
    return found


def test_the_drawn_tree_is_the_tree_of_the_classes() -> None:
    drawn = drawn_tree(errors.__doc__ or "")
    assert len(drawn) > 15  # the drawing was read
    assert drawn == real_tree()


def test_the_drawing_reader_sees_a_class_in_the_wrong_place() -> None:
    """The check can fail: a class drawn under another parent, or missing, reads differently."""
    doc = errors.__doc__ or ""
    moved = doc.replace("│   └── OfflineError", "├── OfflineError").replace("    ├── StoreError", "│   ├── StoreError")
    assert drawn_tree(moved) != real_tree()
    missing = "\n".join(line for line in doc.splitlines() if "WorkerExited" not in line)
    assert "WorkerExited" not in drawn_tree(missing)


@pytest.mark.parametrize("name", sorted(real_tree()))
def test_every_error_says_what_it_is(name: str) -> None:
    assert (getattr(errors, name).__doc__ or "").strip(), f"{name} has no docstring"
