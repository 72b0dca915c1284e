#!/usr/bin/env bash
# The README's main job on the bundled default data: generate the tiny COCO set (if absent),
# train RetinaNet-RepGhostNet 1.0x on it with `mim train mmdet`, then `mim test mmdet` the
# final checkpoint, which prints pycocotools' COCO bbox mAP table, and draws the predictions on
# four val images into $WORK_DIR/predictions.png. CONFIG and WORK_DIR may be overridden (e.g.
# CONFIG=configs/retinanet/mobilenetv2_1_0x_tiny-coco.py for the MobileNetV2 baseline).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"  # mim runs mmdet's train.py with this python
CONFIG=${CONFIG:-configs/retinanet/repghost_1_0x_tiny-coco.py}
WORK_DIR=${WORK_DIR:-work_dirs/demo_retinanet_tiny}

python tools/make_tiny_coco.py --out data/tiny_coco
start=$(date +%s)
mim train mmdet "$CONFIG" --work-dir "$WORK_DIR"
echo "[demo] training took $(( $(date +%s) - start ))s"
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")
mim test mmdet "$CONFIG" --checkpoint "$CHECKPOINT" --work-dir "$WORK_DIR/test" \
  2>&1 | tee "$WORK_DIR/test.log"
python tools/show_predictions.py "$CONFIG" "$CHECKPOINT" --images data/tiny_coco/val2017 \
  --num 4 --out "$WORK_DIR/predictions.png" --force
echo "[demo] COCO bbox mAP of $CHECKPOINT on data/tiny_coco val:"
grep -E 'Average Precision|bbox_mAP' "$WORK_DIR/test.log" | tail -n 13
