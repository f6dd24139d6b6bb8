# One entry point for people and CI: `make run` trains on the bundled data, `make test` checks everything.
# Both install what they need into .venv first (from the package registries only).

VENV ?= .venv
PY := $(VENV)/bin/python
PAIR ?= manifests/examples/btc-usdt.yaml

.PHONY: setup run test lint typecheck pytest clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: pip then takes the local CPU wheel, never a CUDA build of several GB
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/makeusrich train -f $(PAIR) --source sample

lint: setup
	$(VENV)/bin/ruff check makeusrich tests bench

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(PY) -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .makeusrich .pytest_cache .mypy_cache .ruff_cache
