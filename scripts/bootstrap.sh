#!/usr/bin/env bash
# Installs, only when missing, what keel's native builds need on a Debian machine:
#   - clang + libclang   (bindgen, used by rocksdb and lightgbm3 build scripts)
#   - protoc             (candle-onnx compiles ONNX's .proto with prost)
#   - CMake >= 3.28      (LightGBM's CMakeLists; Debian 12 ships 3.25, so we take PyPI's `cmake`)
#   - ccache             (every C/C++ compile of a build script goes through it)
# and builds RocksDB's C++ once per machine (see "One native build" below).
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

# 1. clang/libclang, protoc, a C++ toolchain, python venv support; redis-server and redis-cli
#    (the shared online store's tests start their own servers on loopback ports; the Debian
#    package's system service is not used).
if command -v apt-get >/dev/null 2>&1; then
  _keel_apt_install clang libclang-dev protobuf-compiler g++ make python3-venv pkg-config ccache redis-server redis-tools
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

# Sourcing this twice (.ci/run, then scripts/test.sh) must leave the environment exactly as once:
# build scripts that read PATH would otherwise see a change and rebuild their C++.
case ":$PATH:" in *":$KEEL_VENV/bin:"*) ;; *) export PATH="$KEEL_VENV/bin:$PATH" ;; esac
export CMAKE="$KEEL_VENV/bin/cmake"
if [ -z "${LIBCLANG_PATH:-}" ]; then
  for d in /usr/lib/llvm-*/lib; do
    [ -e "$d/libclang.so" ] || ls "$d"/libclang.so.* >/dev/null 2>&1 || continue
    export LIBCLANG_PATH="$d"
  done
fi
# One build cache outside any clone, shared by the demo, the tests and CI.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"

# 3. One native build.
# Cargo gives a build script a new output directory whenever the unit's hash changes (another
# profile such as `bench`, a `-p` that resolves other features, another set of proc-macros that
# changes `syn`'s features). For RocksDB that meant ~18 minutes of C++ again. So:
#   - RocksDB's C++ is built once per machine, by librocksdb-sys's own build script in a scratch
#     target dir, and every later build links that archive (ROCKSDB_LIB_DIR + ROCKSDB_STATIC, the
#     crate's documented way); its build script then only generates bindings.
#   - Every other C/C++ compile (LightGBM through CMake, lz4) goes through ccache, keyed on the
#     preprocessed source and flags with paths made relative, so a rerun of a build script in a
#     new output directory is a cache hit, not a compile.
export CCACHE_DIR="$KEEL_CACHE/ccache" CCACHE_BASEDIR=/ CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=3G
export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
export CC="ccache cc" CXX="ccache c++"
_keel_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_keel_rocks_version="$(awk '/^name = "librocksdb-sys"/ { getline; gsub(/"/, "", $3); print $3 }' "$_keel_root/Cargo.lock")"
# The archive's name carries what shapes it: crate version, the C++ features keel enables.
_keel_rocks_dir="$KEEL_CACHE/native/librocksdb-sys-$_keel_rocks_version-lz4"
if [ ! -f "$_keel_rocks_dir/librocksdb.a" ]; then
  _keel_log "building RocksDB $_keel_rocks_version's C++ once for this machine (about 18 min on 2 cores) -> $_keel_rocks_dir"
  _keel_scratch="$KEEL_CACHE/native/scratch"
  ( cd "$_keel_root" && unset ROCKSDB_LIB_DIR ROCKSDB_STATIC \
      && CARGO_TARGET_DIR="$_keel_scratch" CARGO_PROFILE_RELEASE_DEBUG=false \
         CARGO_PROFILE_RELEASE_LTO=false cargo build -p librocksdb-sys --release --locked )
  _keel_archive="$(find "$_keel_scratch/release/build" -name librocksdb.a | head -n1)"
  [ -n "$_keel_archive" ] || { _keel_log "librocksdb-sys built no librocksdb.a"; return 1 2>/dev/null || exit 1; }
  mkdir -p "$_keel_rocks_dir.tmp"
  cp "$_keel_archive" "$_keel_rocks_dir.tmp/librocksdb.a"
  rm -rf "$_keel_rocks_dir" && mv "$_keel_rocks_dir.tmp" "$_keel_rocks_dir"
  rm -rf "$_keel_scratch"
fi
export ROCKSDB_LIB_DIR="$_keel_rocks_dir" ROCKSDB_STATIC=1

_keel_log "ok: $(clang --version | head -n1 | cut -c1-40); protoc $(protoc --version | awk '{print $2}'); cmake $("$CMAKE" --version | head -n1 | awk '{print $3}'); rocksdb $ROCKSDB_LIB_DIR; target $CARGO_TARGET_DIR"
