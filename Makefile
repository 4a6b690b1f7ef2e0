# Each target does its own set-up on a fresh Debian machine: a virtualenv with
# the project and its dev tools, and redis-server (promtool and amtool for the
# alerting files) from the system packages when none is on PATH. Tests and the
# demo start their own redis-server on a free loopback port; nothing here talks
# to a server it did not start.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test demo bench lint redis-server promtool alerting clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "redis-server not on PATH: installing it from the system packages"; \
	  apt-get update -q && apt-get install -y -q redis-server; }

# promtool and amtool: Debian's prometheus and prometheus-alertmanager packages.
promtool:
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { \
	  echo "promtool or amtool not on PATH: installing them from the system packages"; \
	  apt-get update -q && apt-get install -y -q prometheus prometheus-alertmanager; }

# The alert rules, their unit tests, the Prometheus and Alertmanager examples.
alerting: promtool
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/tests.yml
	amtool check-config deploy/alertmanager.yml

lint: $(BIN)/.installed
	$(BIN)/ruff check watcher state tests bench
	$(BIN)/ruff format --check watcher state tests bench
	$(BIN)/mypy watcher state

test: $(BIN)/.installed redis-server lint alerting
	$(BIN)/pytest

demo: $(BIN)/.installed redis-server
	$(BIN)/liqwatch demo

bench: $(BIN)/.installed redis-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
