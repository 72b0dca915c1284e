#!/usr/bin/env bash
# The README's main job on the bundled default data:
#  1. generate the tiny COCO set (if absent);
#  2. `mim train mmdet` RetinaNet-RepGhostNet 1.0x on it (RepGhostDeployHook also saves the
#     deployed network beside the last checkpoint);
#  3. `mim test mmdet` the training structure (hook off) for its COCO bbox mAP;
#  4. tools/reparameterize.py -> deploy checkpoint + config; `mim test mmdet` them: same mAP;
#  5. tools/export_onnx.py -> ONNX, checked in onnxruntime, latency train vs deployed;
#  6. tools/export_onnx.py --end2end -> model.onnx + model.json (decoding and NMS in the graph);
#     tools/deploy_test.py: its COCO mAP in the PyTorch-free runtime (onnxruntime, OpenVINO);
#     tools/quantize.py --auto-exclude -> INT8 end2end_int8.onnx, deploy_test: its mAP;
#     tools/deploy_infer.py: the runtime's drawn predictions on four val images;
#  7. draw PyTorch's predictions on four val images into $WORK_DIR/predictions.png;
#  8. print the deployed network's COCO bbox mAP table, then end with the mAPs side by side:
#     PyTorch (training structure, deployed) and the PyTorch-free runtime (both backends).
# CONFIG and WORK_DIR may be overridden; DEPLOY=0 skips 4-6 (e.g. for the MobileNetV2 baseline,
# CONFIG=configs/retinanet/mobilenetv2_1_0x_tiny-coco.py DEPLOY=0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"  # mim runs mmdet's train.py with this python
CONFIG=${CONFIG:-configs/retinanet/repghost_1_0x_tiny-coco.py}
WORK_DIR=${WORK_DIR:-work_dirs/demo_retinanet_tiny}
DEPLOY=${DEPLOY:-1}

python tools/make_tiny_coco.py --out data/tiny_coco
start=$(date +%s)
mim train mmdet "$CONFIG" --work-dir "$WORK_DIR"
echo "[demo] training took $(( $(date +%s) - start ))s"
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")
mim test mmdet "$CONFIG" --checkpoint "$CHECKPOINT" --work-dir "$WORK_DIR/test_train" \
  --cfg-options 'custom_hooks=[]' 2>&1 | tee "$WORK_DIR/test_train.log"
TABLE_LOG="$WORK_DIR/test_train.log"
if [ "$DEPLOY" = 1 ]; then
  python tools/reparameterize.py "$CONFIG" "$CHECKPOINT" "$WORK_DIR/deploy/model_deploy.pth" \
    --input-size 320 320 --force
  mim test mmdet "$WORK_DIR/deploy/model_deploy.py" --checkpoint \
    "$WORK_DIR/deploy/model_deploy.pth" --work-dir "$WORK_DIR/test_deploy" \
    2>&1 | tee "$WORK_DIR/test_deploy.log"
  TABLE_LOG="$WORK_DIR/test_deploy.log"
  python tools/export_onnx.py "$CONFIG" "$CHECKPOINT" --out "$WORK_DIR/deploy/model.onnx" \
    --shape 320 320 --latency 30 --force 2>&1 | grep -v Warning | tee "$WORK_DIR/export.log"
  python tools/export_onnx.py "$CONFIG" "$CHECKPOINT" --out "$WORK_DIR/deploy/end2end.onnx" \
    --end2end --shape 320 320 --force 2>&1 | grep -v Warning
  for backend in onnxruntime openvino; do
    python tools/deploy_test.py "$CONFIG" "$WORK_DIR/deploy/end2end.onnx" --backend "$backend" \
      --batch-size 4 2>&1 | tee "$WORK_DIR/deploy_test_$backend.log" | tail -n 1
  done
  # INT8: calibrated on 200 train images, layers kept fp32 where this machine measures int8
  # slower (the report: end2end_int8.quantization.md), then the same evaluation
  python tools/quantize.py "$CONFIG" "$WORK_DIR/deploy/end2end.onnx" \
    --out "$WORK_DIR/deploy/end2end_int8.onnx" --calib-images 200 --auto-exclude --force \
    2>&1 | grep -v Warning | tee "$WORK_DIR/quantize.log" | grep -E '^- (layers|latency)'
  python tools/deploy_test.py "$CONFIG" "$WORK_DIR/deploy/end2end_int8.onnx" --batch-size 4 \
    2>&1 | tee "$WORK_DIR/deploy_test_int8.log" | tail -n 1
  python tools/deploy_infer.py "$WORK_DIR/deploy/end2end.onnx" \
    $(ls data/tiny_coco/val2017/*.jpg | head -n 4) --out-dir "$WORK_DIR/runtime_predictions" \
    --force | tail -n 8
fi
python tools/show_predictions.py "$CONFIG" "$CHECKPOINT" --images data/tiny_coco/val2017 \
  --num 4 --out "$WORK_DIR/predictions.png" --force
echo "[demo] COCO bbox mAP of $CHECKPOINT on data/tiny_coco val:"
grep -E 'Average Precision|bbox_mAP_copypaste' "$TABLE_LOG" | tail -n 13
if [ "$DEPLOY" = 1 ]; then
  grep -E '^latency' "$WORK_DIR/export.log" | sed 's/^/[demo] /'
  echo "[demo] drawn: $WORK_DIR/predictions.png (PyTorch), $WORK_DIR/runtime_predictions/ (runtime)"
fi
echo "[demo] bbox mAP, training structure (PyTorch): $(grep -o 'coco/bbox_mAP: [0-9.]*' \
  "$WORK_DIR/test_train.log" | tail -n 1)"
if [ "$DEPLOY" = 1 ]; then
  echo "[demo] bbox mAP, deployed (re-parameterized, PyTorch): $(grep -o \
    'coco/bbox_mAP: [0-9.]*' "$WORK_DIR/test_deploy.log" | tail -n 1)"
  for backend in onnxruntime openvino; do
    echo "[demo] bbox mAP, end-to-end ONNX without PyTorch ($backend): $(grep -o \
      'coco/bbox_mAP: [0-9.]*' "$WORK_DIR/deploy_test_$backend.log" | tail -n 1)"
  done
  echo "[demo] bbox mAP, INT8 end-to-end ONNX (onnxruntime): $(grep -o \
    'coco/bbox_mAP: [0-9.]*' "$WORK_DIR/deploy_test_int8.log" | tail -n 1); latency $(grep -o \
    'fp32_ms.*' "$WORK_DIR/quantize.log" | head -n 1)"
fi
