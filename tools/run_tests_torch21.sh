#!/usr/bin/env bash
# The backbone, checkpoint, torch-compat and classification-config tests on torch 2.1, the
# oldest torch transxnet_mm supports (the one mmcv 2.1.0 has prebuilt CUDA wheels for), in a
# second virtual environment beside the main one:
#
#   bash tools/run_tests_torch21.sh [pytest args]      # venv: .venv-torch21 ($TRANSXNET_VENV_TORCH21)
#
# The stack is requirements/torch21.txt. Its wheels (2.7 GB: PyPI's torch 2.1.2 is the CUDA
# build and needs the nvidia-* libraries to import, even without a GPU) are downloaded once
# into $TRANSXNET_CACHE/wheels/torch21 (default ~/.cache/transxnet_mm) and installed from
# there; with the cache, set-up takes about a minute, and nothing when already installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TRANSXNET_VENV_TORCH21:-$ROOT/.venv-torch21}
CACHE=${TRANSXNET_CACHE:-$HOME/.cache/transxnet_mm}
WHEELS=$CACHE/wheels/torch21
REQS=$ROOT/requirements/torch21.txt
log() { printf '[torch21] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# One marker per version of the requirements: a changed list downloads what it lacks.
STAMP=$(cat "$REQS" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-16)
mkdir -p "$WHEELS"
if [ ! -f "$WHEELS/.complete-$STAMP" ]; then
    log "downloading the torch 2.1 stack into $WHEELS (2.7 GB, once per machine)"
    "${PIP[@]}" download --quiet -d "$WHEELS" -r "$REQS" -c "$ROOT/requirements/constraints.txt"
    touch "$WHEELS/.complete-$STAMP"
fi
if [ ! -f "$VENV/.installed-$STAMP" ]; then
    log "installing it into $VENV"
    # --no-compile: no .pyc for the whole of torch up front (minutes of CPU); Python
    # compiles what the tests import.
    "${PIP[@]}" install --quiet --no-compile --no-index --find-links "$WHEELS" -r "$REQS" \
        -c "$ROOT/requirements/constraints.txt"
    touch "$VENV/.installed-$STAMP"
fi

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch, mmcv, mmengine; print(f"[torch21] torch {torch.__version__}, mmcv {mmcv.__version__} (lite), mmengine {mmengine.__version__}")'
exec "$PY" -m pytest \
    tests/test_torch_compat.py tests/test_backbone.py tests/test_checkpoint.py tests/test_cli.py \
    tests/test_classification.py::test_classifier_is_the_authors \
    tests/test_classification.py::test_authors_checkpoint_loads_completely_with_their_logits \
    tests/test_fast_path.py::test_attention_gradients_without_saving_the_matrix \
    tests/test_fast_path.py::test_attention_gradgradcheck \
    "$@"
