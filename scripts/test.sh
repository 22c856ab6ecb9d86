#!/usr/bin/env bash
# The whole test suite: native set-up when missing, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
# A real MLflow server for keel-registry's export test.
KEEL_MLFLOW="$(bash scripts/mlflow-env.sh)"
export KEEL_MLFLOW
# Prometheus' linter for keel serve's /metrics (Debian package `prometheus`).
command -v promtool >/dev/null 2>&1 || _keel_apt_install prometheus
# NVIDIA's Triton HTTP client, a V2 client for keel-serve's protocol test.
KEEL_TRITON_PYTHON="$(bash scripts/tritonclient-env.sh)"
export KEEL_TRITON_PYTHON
cargo test --workspace --all-targets --features keel-gbdt/train --locked
# Doctests (crate-level examples) are not part of --all-targets.
cargo test --workspace --doc --features keel-gbdt/train --locked
