#!/usr/bin/env bash
# The authors' own stack in a side environment, and the parity fixture made with it
# (tests/parity/make_fixture.py). Not part of README's commands or CI: run it by hand when
# the fixture must be made again.
#
#   bash tests/parity/authors_stack.sh AUTHORS_REPO [OUT]
#
# AUTHORS_REPO: a checkout of github.com/LMMMEng/TransXNet (their object_detection/ and
# semantic_segmentation/ code and configs, used as they are). OUT defaults to
# tests/data/authors_parity.tar.xz. The environment ($AUTHORS_VENV, default
# ~/.cache/transxnet_mm/authors_venv): torch 2.13.0 CPU, mmcv-full 1.7.2 built from PyPI's
# source with CPU ops (about 10-30 minutes on 2 cores, once; the wheel is cached), mmdet
# 2.28.2, mmsegmentation 0.30.0, timm 0.6.12, numpy < 2.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
REPO=$(cd "$1" && pwd)
OUT=${2:-$ROOT/tests/data/authors_parity.tar.xz}
VENV=${AUTHORS_VENV:-$HOME/.cache/transxnet_mm/authors_venv}
CACHE=${TRANSXNET_CACHE:-$HOME/.cache/transxnet_mm}/wheels
log() { printf '[authors_stack] %s\n' "$*" >&2; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "setuptools<81" wheel ninja torch==2.13.0 "numpy<2"
mkdir -p "$CACHE"
WHEEL=$(ls "$CACHE"/mmcv_full-1.7.2-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$WHEEL" ]; then
    log "building mmcv-full 1.7.2 with CPU ops (once)"
    TMP=$(mktemp -d)
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} CFLAGS="-DNDEBUG -g0 -fwrapv -O3 -Wall" \
        "$VENV/bin/python" -m pip wheel --quiet --no-build-isolation --no-deps -w "$TMP" mmcv-full==1.7.2
    mv "$TMP"/mmcv_full-*.whl "$CACHE/"
    WHEEL=$(ls "$CACHE"/mmcv_full-1.7.2-*.whl | head -n 1)
fi
"${PIP[@]}" --no-deps "$WHEEL" mmdet==2.28.2 mmsegmentation==0.30.0 timm==0.6.12
"${PIP[@]}" "numpy<2" "yapf<=0.40.1" addict six pycocotools terminaltables prettytable \
    "opencv-python-headless<4.11" "matplotlib<3.10" "scipy<1.14" packaging pyyaml

# Stand-ins: mmcv 1.7 imports torchvision at the top of runner/checkpoint.py (only used for
# torchvision:// URLs), and PyPI's torchvision for torch 2.13 is a CUDA build that does not
# import here; `import timm` (0.6) pulls torchvision in through timm.data, while the authors'
# files need only timm.models.layers, so timm's package __init__s are skipped.
STANDINS=$VENV/standins
TIMM=$("$VENV/bin/python" -c "import importlib.util as u; print(u.find_spec('timm').submodule_search_locations[0])")
mkdir -p "$STANDINS/torchvision" "$STANDINS/timm/models"
echo "__version__ = '0.0.0'  # stand-in: see tests/parity/authors_stack.sh" > "$STANDINS/torchvision/__init__.py"
echo "__path__ = ['$STANDINS/timm', '$TIMM']" > "$STANDINS/timm/__init__.py"
echo "__path__ = ['$TIMM/models']" > "$STANDINS/timm/models/__init__.py"

SAMPLE=$ROOT/data/coco_sample
[ -d "$SAMPLE/val2017" ] || "$ROOT/.venv/bin/python" "$ROOT/tools/dataset_converters/fetch_coco_sample.py" --out "$SAMPLE"
mkdir -p "$(dirname "$OUT")"
log "making $OUT with the authors' code in $REPO"
PYTHONPATH=$STANDINS "$VENV/bin/python" "$ROOT/tests/parity/make_fixture.py" "$REPO" "$SAMPLE" "$OUT"
