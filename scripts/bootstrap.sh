#!/usr/bin/env bash
# Installs, only when missing, what keel's native builds need on a Debian machine:
#   - clang + libclang   (bindgen, used by rocksdb and lightgbm3 build scripts)
#   - protoc             (candle-onnx compiles ONNX's .proto with prost)
#   - CMake >= 3.28      (LightGBM's CMakeLists; Debian 12 ships 3.25, so we take PyPI's `cmake`)
# Idempotent: a second run does nothing and prints one line per tool.
# Source it (`. scripts/bootstrap.sh`) to get CMAKE / LIBCLANG_PATH / PATH exported, or run it.
set -euo pipefail

KEEL_CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
KEEL_VENV="$KEEL_CACHE/venv"
mkdir -p "$KEEL_CACHE"

_keel_log() { printf '[bootstrap] %s\n' "$*" >&2; }

_keel_sudo() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

_keel_apt_updated=0
_keel_apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$_keel_apt_updated" -eq 0 ]; then
    _keel_log "apt-get update"
    _keel_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _keel_apt_updated=1
  fi
  _keel_log "apt-get install ${missing[*]}"
  _keel_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. clang/libclang, protoc, a C++ toolchain, python venv support.
if command -v apt-get >/dev/null 2>&1; then
  _keel_apt_install clang libclang-dev protobuf-compiler g++ make python3-venv pkg-config
else
  _keel_log "not a Debian machine: install clang, libclang, protoc, cmake>=3.28 yourself"
fi

# 2. A private Python venv (cmake from PyPI; later also fixture generators).
_keel_py="$(command -v python3 || true)"
if [ ! -x "$KEEL_VENV/bin/python" ]; then
  _keel_log "creating venv $KEEL_VENV"
  "$_keel_py" -m venv "$KEEL_VENV"
  "$KEEL_VENV/bin/python" -m pip install -q --upgrade pip
fi

_keel_cmake_ok() {
  local v
  v="$("$1" --version 2>/dev/null | head -n1 | awk '{print $3}')" || return 1
  [ -n "$v" ] || return 1
  local major minor
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 28 ]; }
}

if [ -x "$KEEL_VENV/bin/cmake" ] && _keel_cmake_ok "$KEEL_VENV/bin/cmake"; then
  :
elif command -v cmake >/dev/null 2>&1 && _keel_cmake_ok "$(command -v cmake)"; then
  ln -sf "$(command -v cmake)" "$KEEL_VENV/bin/cmake"
else
  _keel_log "pip install cmake>=3.28 into $KEEL_VENV"
  "$KEEL_VENV/bin/python" -m pip install -q 'cmake>=3.28,<4'
fi

export PATH="$KEEL_VENV/bin:$PATH"
export CMAKE="$KEEL_VENV/bin/cmake"
if [ -z "${LIBCLANG_PATH:-}" ]; then
  for d in /usr/lib/llvm-*/lib; do
    [ -e "$d/libclang.so" ] || ls "$d"/libclang.so.* >/dev/null 2>&1 || continue
    export LIBCLANG_PATH="$d"
  done
fi
# One build cache outside any clone, shared by the demo, the tests and CI.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"

_keel_log "ok: $(clang --version | head -n1 | cut -c1-40); protoc $(protoc --version | awk '{print $2}'); cmake $("$CMAKE" --version | head -n1 | awk '{print $3}'); target $CARGO_TARGET_DIR"
