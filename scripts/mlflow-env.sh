#!/usr/bin/env bash
# Installs the MLflow tracking server used by keel-registry's integration test into its own
# venv (MLflow pins its own pandas/numpy; keeping it apart leaves the fixture venv untouched).
# Prints the path of the `mlflow` executable. Idempotent: a no-op when already installed.
set -euo pipefail
MLFLOW_VERSION="3.17.2"
VENV="${KEEL_CACHE:-$HOME/.cache/keel}/venv-mlflow"
if ! compgen -G "$VENV/lib/python3*/site-packages/mlflow-$MLFLOW_VERSION.dist-info" >/dev/null \
   || [ ! -x "$VENV/bin/mlflow" ]; then
  echo "keel: installing mlflow==$MLFLOW_VERSION into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "mlflow==$MLFLOW_VERSION"
fi
echo "$VENV/bin/mlflow"
