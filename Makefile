# One command installs and runs the main job; one installs and runs the tests (README "Quick start").
PYTHON ?= python3

.PHONY: install run demo test lint bench

install:
	bash scripts/setup.sh

run: install
	sednaya-monitor run

demo: install
	sednaya-monitor demo

lint:
	ruff check .
	mypy

test: install lint
	$(PYTHON) -m pytest -q -m "not isolated"
	# each tansu two-member group test in a fresh process (pyproject.toml, marker "isolated")
	$(PYTHON) -m pytest -q -m isolated tests/test_bus_contract.py
	$(PYTHON) -m pytest -q -m isolated tests/test_bus_kafka.py

bench: install
	$(PYTHON) -m bench.all
