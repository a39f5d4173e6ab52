#!/usr/bin/env bash
# The test command: every test on TensorFlow, then the backend-agnostic ones on JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
KERAS_BACKEND=tensorflow "$PYTHON" -m pytest -q -p no:cacheprovider "$@"
KERAS_BACKEND=jax "$PYTHON" -m pytest -q -p no:cacheprovider -m backend_agnostic "$@"
