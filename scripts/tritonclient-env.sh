#!/usr/bin/env bash
# Installs NVIDIA's Triton HTTP and gRPC clients (V2 / Open Inference Protocol clients no one
# here wrote) into their own venv for keel-serve's protocol tests.
# Prints the path of the venv's python. Idempotent: a no-op when already installed.
set -euo pipefail
TRITON_VERSION="2.73.0"
bash "$(dirname "$0")/pip-venv.sh" triton "tritonclient-$TRITON_VERSION.dist-info grpc" \
  "tritonclient[http,grpc]==$TRITON_VERSION"
echo "${KEEL_CACHE:-$HOME/.cache/keel}/venv-triton/bin/python"
