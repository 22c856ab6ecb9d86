#!/usr/bin/env bash
# Installs the official Python packages used to generate fixtures and as live peers in
# benchmarks, into keel's private venv. Tests never need them: fixtures are committed.
# Usage: scripts/python-env.sh && ~/.cache/keel/venv/bin/python <script>
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
"$KEEL_VENV/bin/python" -m pip install -q -r scripts/requirements-python.txt
echo "$KEEL_VENV/bin/python"
