# One entry point per job; each installs what it needs into .venv first.
PROMPT ?= Explain in two sentences why on-device LLMs need protection from a compromised OS.
VENV := .venv/bin

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/flexserve run "$(PROMPT)" --max-tokens 64

test: setup
	$(VENV)/ruff check src tests
	$(VENV)/python -m pytest -q

bench: setup
	$(VENV)/flexserve bench engine
