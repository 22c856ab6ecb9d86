#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: native set-up when missing, then the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
cargo run --locked -p keel-examples --example quickstart -- "$@"
