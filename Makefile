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
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) -m bench.all
