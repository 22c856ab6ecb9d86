#!/usr/bin/env bash
# Installs Feast with its Redis online store (the peer of keel's Redis store benchmark) into
# its own venv (Feast pins its own pandas/pyarrow; keeping it apart leaves the other venvs
# untouched). Prints the path of the venv's python. Idempotent: a no-op when installed.
set -euo pipefail
FEAST_VERSION="0.67.0"
VENV="${KEEL_CACHE:-$HOME/.cache/keel}/venv-feast"
if ! compgen -G "$VENV/lib/python3*/site-packages/feast-$FEAST_VERSION.dist-info" >/dev/null \
   || [ ! -x "$VENV/bin/python" ]; then
  echo "keel: installing feast[redis]==$FEAST_VERSION into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "feast[redis]==$FEAST_VERSION"
fi
echo "$VENV/bin/python"
