#!/usr/bin/env bash
# Proof that the project's own commands share ONE native build: runs the demo, the tests, clippy,
# rustdoc and the bench build, then all of them again in another order (with the demo last), and
# counts the C and C++ compiles of the second round. Expected: 0.
#
# How compiles are counted: a directory of shims (cc, c++, gcc, g++, clang, clang++) stands first
# on PATH for both rounds, so any compiler a build script starts, directly, through ccache or
# through CMake, is logged when it compiles (`-c` without `-E`); ccache hits never reach it.
# Usage: scripts/native-check.sh [--quick]   (round 2 runs scripts/test.sh; --quick: only builds it)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
quick="${1:-}"

shims="$KEEL_CACHE/native-check/shims"
log="$KEEL_CACHE/native-check/compiles.log"
mkdir -p "$shims"
for tool in cc c++ gcc g++ clang clang++; do
  real="$(command -v "$tool" || true)"
  [ -n "$real" ] || continue
  [ "$real" = "$shims/$tool" ] && continue
  cat > "$shims/$tool" <<SHIM
#!/bin/sh
case " \$* " in *" -E "*) ;; *" -c "*) printf '%s %s\n' "$tool" "\$*" >> "$log" ;; esac
exec "$real" "\$@"
SHIM
  chmod +x "$shims/$tool"
done
case ":$PATH:" in *":$shims:"*) ;; *) export PATH="$shims:$PATH" ;; esac

features=(--features keel-gbdt/train --locked)
run() { echo "== $*" >&2; "$@" > "$KEEL_CACHE/native-check/last.log" 2>&1 || { tail -40 "$KEEL_CACHE/native-check/last.log" >&2; exit 1; }; }
tests() {
  if [ "$quick" = "--quick" ] || [ "$1" = 1 ]; then
    run cargo test --workspace --all-targets "${features[@]}" --no-run
  else
    run bash scripts/test.sh
  fi
}
round() {
  run bash scripts/demo.sh
  run cargo test --workspace --all-targets "${features[@]}" --no-run
  tests "$1"
  run cargo clippy --workspace --all-targets --locked -- -D warnings
  run env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
  run cargo bench --workspace "${features[@]}" --no-run
  run bash scripts/demo.sh
}

: > "$log"
start=$(date +%s)
echo "round 1 (may compile C/C++ once for this machine)" >&2
round 1
first=$(wc -l < "$log")
: > "$log"
echo "round 2 (must compile no C/C++)" >&2
round 2
second=$(wc -l < "$log")
echo "C/C++ compiles: round 1 $first, round 2 $second ($(( $(date +%s) - start )) s)"
if [ "$second" -ne 0 ]; then
  echo "native code compiled again in round 2:" >&2
  head -20 "$log" >&2
  exit 1
fi
