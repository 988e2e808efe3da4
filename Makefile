# riverrun — every target does its own set-up from a fresh clone.
#   make demo   run the whole system end to end on a local Kafka broker
#   make test   lint, the strict docs build, then unit and integration tests (the
#               integration tests start the broker)
#   make docs   the documentation site on http://127.0.0.1:8000 (make docs-build: into site/)
#   make bench  throughput of the learning core vs the worker through Kafka, and the decoding
#               cost of each input format
#   make soak   5 million events through the learning core, then through a worker and its
#               learner on a local Kafka broker: does memory or checkpoint grow?

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# From a checkout, everything riverrun writes stays in it (and `make clean` removes it):
# an installed riverrun uses ~/.cache/riverrun/kafka and ./.riverrun instead.
export RIVERRUN_KAFKA_CACHE_DIR ?= $(CURDIR)/.cache/kafka
export RIVERRUN_DATA_DIR ?= $(CURDIR)/.cache/riverrun

.PHONY: docs docs-build venv demo test unit unit-other-pythons unit-every-python unit-side-by-side integration lint bench bench-serving bench-decode soak lock schemas kafka-up kafka-down clean prometheus asyncapi chromium schema-registry

# The other supported Pythons, where this machine has them: installed by pyenv beside the
# default one, or on PATH. Each gets a venv with the same pins and runs the unit suite.
find_python = $(firstword $(foreach p,$(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1) 2>/dev/null),$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
PYTHON_3.12 := $(call find_python,3.12)
PYTHON_3.13 := $(call find_python,3.13)
OTHER_PYTHONS := $(foreach v,3.12 3.13,$(if $(PYTHON_$(v)),$(v)))
# Doctests of the packages run with the tests (every >>> example in the code).
PYTEST := -m pytest -p no:cacheprovider --doctest-modules
PACKAGES := riverrun schemas online_models streams

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: riverrun needs Python 3.11 (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

.venv-%/.installed: pyproject.toml constraints.txt
	$(PYTHON_$*) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# The local and test schema registry: Conduit's, built from the Go module proxy (pinned by
# deploy/schema_registry/go.sum; Go 1.23+ needed). The integration tests start it, and
# `make demo` in Avro, JSON Schema or Protobuf.
SCHEMA_REGISTRY := .cache/schema-registry/riverrun-schema-registry

$(SCHEMA_REGISTRY): $(addprefix deploy/schema_registry/,build.sh main.go go.mod go.sum)
	deploy/schema_registry/build.sh $@

schema-registry: $(SCHEMA_REGISTRY)

# The demo in another format than JSON (e.g. RIVERRUN_EVENTS_FORMAT=avro) runs beside the
# local schema registry, unless RIVERRUN_SCHEMA_REGISTRY_URL names one; the default demo
# neither builds nor starts it.
DEMO_REGISTRY := $(if $(RIVERRUN_SCHEMA_REGISTRY_URL),,$(filter-out json,$(RIVERRUN_EVENTS_FORMAT) $(RIVERRUN_JOIN_FORMAT) $(RIVERRUN_PREDICTIONS_FORMAT)))

demo: venv $(if $(DEMO_REGISTRY),$(SCHEMA_REGISTRY))
	$(if $(DEMO_REGISTRY),deploy/schema_registry/with_registry.sh) $(BIN)/riverrun demo

# Debian's Prometheus package (prometheus, promtool), unpacked without root: the
# monitoring tests check the rules and scrape a worker with them.
PROMETHEUS := .cache/prometheus/usr/bin/prometheus

$(PROMETHEUS): deploy/prometheus/install.sh
	deploy/prometheus/install.sh .cache/prometheus

prometheus: $(PROMETHEUS)

# Debian's docker-compose, unpacked without root: the deploy tests validate
# deploy/compose.yaml with `docker-compose config` (no container engine needed).
DOCKER_COMPOSE := .cache/docker-compose/bin/docker-compose

$(DOCKER_COMPOSE): deploy/compose/install.sh
	deploy/compose/install.sh .cache/docker-compose

# Debian's Chromium, unpacked without root: the browser tests open every page of the
# docs site and a `riverrun report` in it, headless.
CHROMIUM := .cache/chromium/bin/chromium

$(CHROMIUM): deploy/browser/install.sh
	deploy/browser/install.sh .cache/chromium

chromium: $(CHROMIUM)

# The AsyncAPI project's parser (npm, pinned by deploy/asyncapi/package-lock.json): the
# unit tests validate schemas/asyncapi.json with it.
ASYNCAPI := .cache/asyncapi/node_modules/@asyncapi/parser/package.json

$(ASYNCAPI): deploy/asyncapi/install.sh deploy/asyncapi/package-lock.json
	deploy/asyncapi/install.sh .cache/asyncapi
	@touch $@

asyncapi: $(ASYNCAPI)

# Set-up first, side by side (no test runs yet): the venvs of every Python, Prometheus,
# docker-compose, Chromium, the AsyncAPI parser and the schema registry.
OTHER_VENVS := $(foreach v,$(OTHER_PYTHONS),.venv-$(v)/.installed)

test:
	$(MAKE) -j4 venv $(PROMETHEUS) $(DOCKER_COMPOSE) $(CHROMIUM) $(ASYNCAPI) $(SCHEMA_REGISTRY) $(OTHER_VENVS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy docs/hooks
	$(MAKE) docs-build
	$(MAKE) unit-every-python
	$(BIN)/python -m pytest -p no:cacheprovider --durations=15 tests/integration

unit: venv $(DOCKER_COMPOSE) $(ASYNCAPI)
	$(BIN)/python $(PYTEST) tests/unit $(PACKAGES)

# The unit suite (and doctests) on Python 3.12 and 3.13 when present (`unit-other-pythons`),
# or on those and the default Python (`unit-every-python`, what `make test` runs), side by
# side; says which ran, prints each suite's output whole, fails if any failed.
unit-other-pythons: $(DOCKER_COMPOSE) $(ASYNCAPI) $(OTHER_VENVS)
	@$(MAKE) --no-print-directory unit-side-by-side UNIT_VENVS="$(foreach v,$(OTHER_PYTHONS),.venv-$(v))"

unit-every-python: venv $(DOCKER_COMPOSE) $(ASYNCAPI) $(OTHER_VENVS)
	@$(MAKE) --no-print-directory unit-side-by-side UNIT_VENVS="$(VENV) $(foreach v,$(OTHER_PYTHONS),.venv-$(v))"

unit-side-by-side:
	@echo "other Pythons: $(or $(OTHER_PYTHONS),none found)"
	@mkdir -p .cache/unit
	@for venv in $(UNIT_VENVS); do \
		( $$venv/bin/python $(PYTEST) -q tests/unit $(PACKAGES) > .cache/unit/$$venv.log 2>&1; \
		  echo $$? > .cache/unit/$$venv.rc ) & \
	done; wait; failed=0; for venv in $(UNIT_VENVS); do \
		echo "unit tests on $$($$venv/bin/python -c 'import platform; print("Python", platform.python_version())'):"; \
		cat .cache/unit/$$venv.log; \
		[ "$$(cat .cache/unit/$$venv.rc)" = 0 ] || failed=1; \
	done; exit $$failed

integration: venv $(PROMETHEUS) $(CHROMIUM) $(SCHEMA_REGISTRY)
	$(BIN)/python -m pytest tests/integration

# The documentation site (docs/, mkdocs.yml): served with live reload, or built into
# site/ strictly (a broken link or anchor, or an undocumented setting, command or
# schema, fails the build).
export NO_MKDOCS_2_WARNING := 1
DOCS_ADDR ?= 127.0.0.1:8000

docs: venv
	$(BIN)/mkdocs serve --dev-addr $(DOCS_ADDR)

docs-build: venv
	$(BIN)/mkdocs build --strict

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy docs/hooks

BENCH_VENV := .cache/bench-venv

$(BENCH_VENV)/.installed: bench/requirements-frameworks.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements-frameworks.txt
	@touch $@

bench: venv $(BENCH_VENV)/.installed
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)
	$(BIN)/python -m bench.serving $(SERVING_ARGS)
	$(BIN)/python -m bench.stall
	$(BIN)/python -m bench.decode $(DECODE_ARGS)

# CPU per event to decode each input format, beside confluent-kafka's deserializers: no
# broker, ~1 min (DECODE_ARGS="--events 2000 --rounds 3" for a few seconds).
bench-decode: venv
	$(BIN)/python -m bench.decode $(DECODE_ARGS)

# The /v1 predict API under load beside the stream (SERVING_ARGS=--quick for ~2 min).
bench-serving: venv
	$(BIN)/python -m bench.serving $(SERVING_ARGS)

# ~40 min on 2 cores, the core ~10 and the worker ~30 (SOAK_ARGS="--events 1000000" for
# a shorter one, "--only worker" for one of the two).
soak: venv
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Re-pin every dependency after changing pyproject.toml (commit the result).
lock: venv
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

schemas: venv
	$(BIN)/riverrun schemas export

kafka-up: venv
	$(BIN)/riverrun kafka up

kafka-down: venv
	$(BIN)/riverrun kafka down

clean:
	-$(BIN)/riverrun kafka down
	rm -rf $(VENV) .venv-3.* .cache .pytest_cache .ruff_cache .mypy_cache *.egg-info
