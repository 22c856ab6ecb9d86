#!/usr/bin/env bash
# Installs the MLflow tracking server used by keel-registry's integration test into its own
# venv (MLflow pins its own pandas/numpy; keeping it apart leaves the fixture venv untouched).
# Prints the path of the `mlflow` executable. Idempotent: a no-op when already installed.
set -euo pipefail
MLFLOW_VERSION="3.17.2"
bash "$(dirname "$0")/pip-venv.sh" mlflow "mlflow-$MLFLOW_VERSION.dist-info" "mlflow==$MLFLOW_VERSION"
echo "${KEEL_CACHE:-$HOME/.cache/keel}/venv-mlflow/bin/mlflow"
