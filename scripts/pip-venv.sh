#!/usr/bin/env bash
# A peer tool from PyPI in its own venv (each pins its own pandas/numpy/protobuf, so they stay
# apart): `pip-venv.sh NAME MARKER SPEC...` installs SPEC into $KEEL_CACHE/venv-NAME unless
# every MARKER glob (relative to the venv's site-packages) already matches. Idempotent.
set -euo pipefail
name="$1"
markers="$2"
shift 2
VENV="${KEEL_CACHE:-$HOME/.cache/keel}/venv-$name"
missing=0
[ -x "$VENV/bin/python" ] || missing=1
for m in $markers; do
  compgen -G "$VENV/lib/python3*/site-packages/$m" >/dev/null || missing=1
done
if [ "$missing" -eq 1 ]; then
  echo "keel: installing $* into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$@"
fi
