"""The package's shape. Its import contracts (pyproject.toml, run by `make lint`) are shown to bite: each
forbidden import planted in a copy of the package breaks the contract that names it. Besides them: every
subpackage says what it offers (`__all__`), and outside a subpackage its modules are imported through that,
except the few rooms that are imported by name on purpose."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Modules imported by name from outside their subpackage, each for a reason its docstring gives.
BY_NAME = {
    "makeusrich.store.track_schema": "the track rows' columns import pandas, which the operator does without",
    "makeusrich.store.s3": "minio, loaded only to open an S3 store",
    "makeusrich.market.binance": "python-binance, loaded only by the code that fetches",
}


def lint_imports(tree: Path) -> tuple[int, str]:
    """lint-imports over the package in `tree` (its own copy, not the installed one), with its pyproject.toml;
    the report with its line breaks folded, so that a long contract name reads as one line."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tree = tmp_path_factory.mktemp("package")
    shutil.copytree(ROOT / "makeusrich", tree / "makeusrich", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    code, report = lint_imports(tree)
    assert code == 0 and "0 broken" in report, report  # the copy as it is keeps every contract
    yield tree


PLANTED = [
    ("cli.py", "import torch", "torch only in the trainer"),
    ("cli.py", "import nicegui", "nicegui only in the dashboard"),
    ("cli.py", "import kopf", "kopf only in the operator's handlers"),
    ("track/summary.py", "import kserve", "kserve only in the serving adapter"),
    ("ui/format.py", "import minio", "minio only in the S3 store"),
    ("operator/objects.py", "from binance.client import Client", "python-binance only in the Binance module"),
    # what the trainer offers loads torch: every image's `makeusrich --help` would need it
    ("trainer/__init__.py", "from makeusrich.trainer import pipeline", "The makeusrich command loads no component's"),
    ("scoring/evaluate.py", "from makeusrich import trainer", "Layers:"),
    ("track/rows.py", "from makeusrich.ui import card", "Layers:"),
    ("store/base.py", "from makeusrich.store import reader", "No cycles among the modules"),
]


@pytest.mark.parametrize(("module", "line", "contract"), PLANTED)
def test_a_forbidden_import_breaks_its_contract(copy: Path, module: str, line: str, contract: str) -> None:
    target = copy / "makeusrich" / module
    original = target.read_text()
    target.write_text(f"{original}\n{line}  # planted by the test\n")
    try:
        code, report = lint_imports(copy)
    finally:
        target.write_text(original)
    assert code != 0
    assert verdict(report, contract) == "BROKEN", report


def verdict(report: str, contract: str) -> str:
    """KEPT or BROKEN: what the report's summary says of the contract whose name starts with `contract`."""
    summary = report.split("Broken contracts", 1)[0]
    assert contract in summary, f"no contract named {contract!r}"
    after = summary.split(contract, 1)[1]
    kept, broken = after.find(" KEPT"), after.find(" BROKEN")
    return "BROKEN" if broken != -1 and (kept == -1 or broken < kept) else "KEPT"


def package_graph() -> grimp.ImportGraph:
    return grimp.build_graph("makeusrich", cache_dir=None)  # a cache could hold an older tree's imports


def subpackages() -> list[str]:
    graph = package_graph()
    return sorted(m for m in graph.modules if m.count(".") == 1 and graph.find_children(m))


@pytest.mark.parametrize("package", subpackages())
def test_every_subpackage_says_what_it_offers(package: str) -> None:
    module = importlib.import_module(package)
    offered = getattr(module, "__all__", None)
    assert offered, f"{package}/__init__.py has no __all__"
    assert [name for name in offered if not hasattr(module, name)] == []
    assert (module.__doc__ or "").strip(), f"{package}/__init__.py does not say what the package is"


def test_outside_a_subpackage_its_modules_are_imported_through_what_it_offers() -> None:
    graph = package_graph()
    packages = set(subpackages())
    deep = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            package = ".".join(imported.split(".")[:2])
            if package not in packages or imported == package or importer.startswith(package):
                continue
            offered_as_module = imported.rsplit(".", 1)[1] in getattr(importlib.import_module(package), "__all__", ())
            if imported not in BY_NAME and not offered_as_module:
                deep.append(f"{importer} -> {imported}")
    assert deep == [], "import these from their package (add the name to its __all__)"


def test_the_operator_loads_no_pandas() -> None:
    """pandas is 80 MiB of memory in a process that builds no table (the operator at 10,000 pairs,
    bench/results/operator.md): neither the command line's parser, which imports every command's module, nor the
    operator's handlers load it (the store imports it only in the functions that read Parquet). A fresh
    interpreter, since this one has pandas loaded already."""
    code = (
        "import sys; from makeusrich.cli import build_parser; build_parser(); import makeusrich.operator.handlers; "
        "print('pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
