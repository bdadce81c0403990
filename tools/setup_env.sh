#!/usr/bin/env bash
# Sets up everything lc_keras needs on a fresh Debian machine, idempotently:
# Debian's Fashion-MNIST files (offline data for the example and benchmarks)
# and a virtual environment .venv with lc_keras installed (editable) plus the
# test extras. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
.venv/bin/python -m pip install -q -e ".[test,plot]"
