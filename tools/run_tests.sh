#!/usr/bin/env bash
# Set up the CPU stack (once; cheap when already done) and run the test suite.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
VENV=${TRANSXNET_VENV:-$ROOT/.venv}
cd "$ROOT"
exec "$VENV/bin/python" -m pytest tests "$@"
