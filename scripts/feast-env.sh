#!/usr/bin/env bash
# Installs Feast with its Redis online store (the peer of keel's Redis store benchmark) into
# its own venv. Prints the path of the venv's python. Idempotent: a no-op when installed.
set -euo pipefail
FEAST_VERSION="0.67.0"
bash "$(dirname "$0")/pip-venv.sh" feast "feast-$FEAST_VERSION.dist-info" "feast[redis]==$FEAST_VERSION"
echo "${KEEL_CACHE:-$HOME/.cache/keel}/venv-feast/bin/python"
