#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: native set-up when missing, then the quickstart.
#
# It builds only the quickstart example (not the workspace's tests and benches). RocksDB's C++
# comes from the archive scripts/bootstrap.sh builds once per machine, and every other C/C++
# compile goes through ccache, so this narrower build and the test command never compile the
# same C++ twice (scripts/native-check.sh proves it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
cargo build -p keel-examples --example quickstart --locked
exec "$CARGO_TARGET_DIR/debug/examples/quickstart" "$@"
