#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: native set-up when missing, then the quickstart.
#
# It builds the workspace exactly as the test command does (same packages, targets and
# features), so RocksDB's and LightGBM's C++ compile once and are shared with the tests: a
# `cargo run -p keel-examples` alone resolves a smaller feature set and would rebuild them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
cargo build --workspace --all-targets --features keel-gbdt/train --locked
exec "$CARGO_TARGET_DIR/debug/examples/quickstart" "$@"
