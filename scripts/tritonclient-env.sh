#!/usr/bin/env bash
# Installs NVIDIA's Triton HTTP and gRPC clients (V2 / Open Inference Protocol clients no one
# here wrote) into their own venv for keel-serve's protocol tests.
# Prints the path of the venv's python. Idempotent: a no-op when already installed.
set -euo pipefail
TRITON_VERSION="2.73.0"
VENV="${KEEL_CACHE:-$HOME/.cache/keel}/venv-triton"
if ! compgen -G "$VENV/lib/python3*/site-packages/tritonclient-$TRITON_VERSION.dist-info" >/dev/null \
   || ! compgen -G "$VENV/lib/python3*/site-packages/grpc" >/dev/null \
   || [ ! -x "$VENV/bin/python" ]; then
  echo "keel: installing tritonclient[http,grpc]==$TRITON_VERSION into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "tritonclient[http,grpc]==$TRITON_VERSION"
fi
echo "$VENV/bin/python"
