#!/usr/bin/env bash
# Installs NVIDIA's Triton HTTP client (a V2 / Open Inference Protocol client no one here wrote)
# into its own venv for keel-serve's protocol test.
# Prints the path of the venv's python. Idempotent: a no-op when already installed.
set -euo pipefail
TRITON_VERSION="2.73.0"
VENV="${KEEL_CACHE:-$HOME/.cache/keel}/venv-triton"
if ! compgen -G "$VENV/lib/python3*/site-packages/tritonclient-$TRITON_VERSION.dist-info" >/dev/null \
   || [ ! -x "$VENV/bin/python" ]; then
  echo "keel: installing tritonclient[http]==$TRITON_VERSION into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "tritonclient[http]==$TRITON_VERSION"
fi
echo "$VENV/bin/python"
