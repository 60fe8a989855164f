#!/usr/bin/env bash
# The optional second demo: a fit check of Semantic FPN-TransXNet-T on the
# real sample rasterised into ADE20K's layout.
#   1. set up the CPU stack (tools/setup_env.sh; cheap when already done),
#   2. fetch the COCO val2017 sample and rasterise its human annotations into
#      ADE20K's classes (data/ade20k_sample),
#   3. train on 8 of the 10 images until the model fits them, evaluating mIoU
#      on those 8 (configs/demo/fpn_transxnet_t_ade20k_fitcheck.py),
#   4. evaluate the checkpoint on the 8 training images (the fit check) and on
#      the 2 held-out ones with mmseg's IoUMetric, drawing ground truth beside
#      the prediction for each (PNG),
#   5. plot the loss, learning-rate and mIoU curves from the run's log (PNG).
# The backbone trains from scratch: no ImageNet weights can be downloaded here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash tools/setup_env.sh
PY=${TRANSXNET_VENV:-$ROOT/.venv}/bin/python
CONFIG=configs/demo/fpn_transxnet_t_ade20k_fitcheck.py
WORK_DIR=${WORK_DIR:-work_dirs/demo_fpn_transxnet_t}
start=$(date +%s)

"$PY" tools/dataset_converters/coco_to_ade20k_sample.py \
    --coco data/coco_sample --out data/ade20k_sample
echo "== A FIT CHECK: Semantic FPN-TransXNet-T trains from scratch on 8 of the"
echo "== 10 sample images until it fits them. mIoU on those 8 shows that it"
echo "== learns; mIoU on the 2 held-out images stays low."
rm -rf "$WORK_DIR"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
trained=$(date +%s)
CKPT=$(cat "$WORK_DIR/last_checkpoint")
# Validation is the fit check (the training images); test, the held-out ones.
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/fit_check" \
    --show-dir vis --cfg-options test_dataloader.dataset.indices=8
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/held_out" \
    --show-dir vis
PLOT="$PY tools/analysis_tools/analyze_logs.py plot_curve $WORK_DIR"
mkdir -p "$WORK_DIR/plots"
$PLOT --keys loss --out "$WORK_DIR/plots/loss.png"
$PLOT --keys lr --out "$WORK_DIR/plots/lr.png"
$PLOT --keys mIoU aAcc --title 'fit check: on the 8 training images' \
    --out "$WORK_DIR/plots/miou.png"

"$PY" - "$WORK_DIR" <<'EOF'
import glob, json, sys
work = sys.argv[1]
for name, what in (('fit_check', 'FIT CHECK, the 8 training images'),
                   ('held_out', 'held-out, 2 images never trained on')):
    with open(sorted(glob.glob(f'{work}/{name}/*/*.json'))[-1]) as f:
        m = json.load(f)
    print(f'   mIoU {m["mIoU"]:.1f}, aAcc {m["aAcc"]:.1f} (%; over the classes '
          f'present): {what}')
EOF
end=$(date +%s)
echo "== Done in $(( end - start )) s (training $(( trained - start )) s)."
echo "   checkpoint: $CKPT"
echo "   drawings (ground truth left, prediction right):"
echo "     the training images: $WORK_DIR/fit_check/vis/vis_data/vis_image/"
echo "     the held-out images: $WORK_DIR/held_out/vis/vis_data/vis_image/"
echo "   curves:     $WORK_DIR/plots/loss.png  lr.png  miou.png"
