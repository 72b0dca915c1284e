#!/usr/bin/env bash
# Create or refresh `.venv/` at the repository root with the pinned OpenMMLab stack:
# torch + torchvision, mmengine, mmcv (compiled ops), mmdet, mmpretrain, the test tools and
# mmrepghost itself (editable). Both README commands call it; it is idempotent and safe to
# re-run after an interruption (nothing is marked done until it has been verified).
#
# Environment knobs:
#   PYTHON=/path/to/python3.x    interpreter for the venv (default: python3.11, else python3)
#   MMREPGHOST_VENV=DIR          venv location (default: <repo>/.venv)
#   MMREPGHOST_CACHE=DIR         wheel cache + build logs (default: ~/.cache/mmrepghost)
#   MMREPGHOST_WITH_CUDA=1       build mmcv with CUDA ops (needs nvcc and a CUDA torch)
#   MMREPGHOST_MMCV_JOBS=N       parallel compile jobs for mmcv (default: nproc)
#   MMREPGHOST_MMCV_SDIST=FILE   a local mmcv source package instead of downloading one
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMREPGHOST_VENV:-$ROOT/.venv}
CACHE=${MMREPGHOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrepghost}
CONSTRAINTS=$ROOT/requirements/constraints.txt
WITH_CUDA=${MMREPGHOST_WITH_CUDA:-0}
MMCV_VERSION=$(sed -n 's/^mmcv==\([0-9.]*\).*/\1/p' "$CONSTRAINTS")
SUPPORTED_PY="3.10 3.11 3.12"
STEP="start"
LOG_DIR="$CACHE/logs"
mkdir -p "$LOG_DIR"
PIP_LOG="$LOG_DIR/pip-$(date +%Y%m%d-%H%M%S).log"

say() { printf '[bootstrap] %s\n' "$*"; }
die() {  # die HINT: report the failing step and a hint, exit non-zero
  printf '[bootstrap] FAILED during: %s\n[bootstrap] hint: %s\n' "$STEP" "$1" >&2
  exit 1
}
trap 'rc=$?; if [ $rc -ne 0 ] && [ "${DIED:-0}" = 0 ]; then printf "[bootstrap] FAILED during: %s (exit %s)\n[bootstrap] hint: see the output above and the pip log %s\n" "$STEP" "$rc" "$PIP_LOG" >&2; fi' EXIT
fail() { DIED=1; die "$1"; }

pip_install() {  # pip_install ARGS...: pinned install, output to the pip log
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "$@" \
      >>"$PIP_LOG" 2>&1; then
    tail -n 25 "$PIP_LOG" | grep -v 'is ignored: it is neither' >&2 || true
    fail "pip could not install: $* (full log: $PIP_LOG). Check the network access to PyPI and the pins in requirements/constraints.txt."
  fi
}

# ---------------------------------------------------------------------------------------------
STEP="choosing the Python interpreter"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
[ -n "$PYTHON" ] || fail "no python3 found on PATH; install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv python3.11-dev) or set PYTHON=/path/to/python3.11"
PY_VER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case " $SUPPORTED_PY " in
  *" $PY_VER "*) ;;
  *) fail "Python $PY_VER ($PYTHON) is not supported: the pinned stack needs one of $SUPPORTED_PY (measured on 3.11). Set PYTHON=/path/to/python3.11." ;;
esac

FINGERPRINT=$(cat "$CONSTRAINTS" "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/pyproject.toml" \
  "${BASH_SOURCE[0]}" \
  | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-16)-py$PY_VER-cuda$WITH_CUDA
STAMP=$VENV/.mmrepghost-env

verify() {  # the checks that must pass before the environment counts as built
  "$VENV/bin/python" - <<'EOF' && "$VENV/bin/mim" --version >/dev/null
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
dets, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
import mmdet.models, mmpretrain.models  # noqa: E401,F401
import mmrepghost  # noqa: F401
EOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ]; then
  STEP="verifying the existing environment"
  if verify >>"$PIP_LOG" 2>&1; then
    say "environment $VENV is up to date"
    exit 0
  fi
  say "existing environment failed verification; repairing it (log: $PIP_LOG)"
  rm -f "$STAMP"
fi

# ---------------------------------------------------------------------------------------------
STEP="creating the virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null \
    || [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$PY_VER" ]; then
  rm -rf "$VENV"
  say "creating $VENV with Python $PY_VER"
  "$PYTHON" -m venv "$VENV" || fail "'$PYTHON -m venv' failed; install the venv module (e.g. apt-get install python$PY_VER-venv)"
fi

STEP="installing the pinned torch stack"
say "installing torch, torchvision and build tools (pins: requirements/constraints.txt; log: $PIP_LOG)"
pip_install 'setuptools>=77,<81' wheel torch torchvision numpy

TORCH_TAG=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
TORCH_CUDA=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")')

# ---------------------------------------------------------------------------------------------
STEP="installing mmcv $MMCV_VERSION with compiled ops"
mmcv_ops_work() {
  "$VENV/bin/python" - <<EOF >/dev/null 2>&1
import mmcv, torch
assert mmcv.__version__ == "$MMCV_VERSION", mmcv.__version__
from mmcv.ops import nms
nms(torch.rand(4, 4) + torch.tensor([0., 0., 1., 1.]), torch.rand(4), 0.5)
EOF
}

if [ "$WITH_CUDA" = 1 ]; then
  command -v nvcc >/dev/null || fail "MMREPGHOST_WITH_CUDA=1 but nvcc is not on PATH; install the CUDA toolkit matching torch ($TORCH_TAG) or unset MMREPGHOST_WITH_CUDA"
  [ -n "$TORCH_CUDA" ] || fail "MMREPGHOST_WITH_CUDA=1 but torch $TORCH_TAG is a CPU build"
  OPS_KIND="cuda$TORCH_CUDA"
else
  OPS_KIND="cpu"
fi
# The cache key names everything the binary depends on: a wheel built against another torch
# breaks its ABI, so a different torch never reuses it.
KEY="mmcv-$MMCV_VERSION-torch-${TORCH_TAG//+/_}-py$PY_VER-$OPS_KIND-$(uname -m)"
WHEEL_DIR="$CACHE/wheels/$KEY"

if mmcv_ops_work && [ -f "$VENV/.mmcv-key" ] && [ "$(cat "$VENV/.mmcv-key")" = "$KEY" ]; then
  say "mmcv $MMCV_VERSION with ops already installed ($KEY)"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    STEP="building mmcv $MMCV_VERSION ($OPS_KIND ops)"
    MMCV_VERSION=$MMCV_VERSION WITH_CUDA=$WITH_CUDA CONSTRAINTS=$CONSTRAINTS \
      bash "$ROOT/tools/build_mmcv.sh" "$VENV/bin/python" "$WHEEL_DIR" "$LOG_DIR/mmcv-build-$KEY.log" \
      || { DIED=1; exit 1; }  # build_mmcv.sh printed the failing step, a hint and the log path
  else
    say "reusing the cached mmcv wheel $WHEEL_DIR"
  fi
  STEP="installing the mmcv wheel"
  pip_install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  pip_install mmengine addict packaging Pillow pyyaml yapf opencv-python
  mmcv_ops_work || fail "mmcv installed but its ops do not run with torch $TORCH_TAG; delete $WHEEL_DIR and re-run"
  echo "$KEY" >"$VENV/.mmcv-key"
fi

# ---------------------------------------------------------------------------------------------
STEP="installing mmdet, mmpretrain and the test requirements"
say "installing mmengine, mmdet, mmpretrain, pycocotools, openmim, timm, onnx, onnxruntime, onnxscript, openvino, torchao, nncf, pytest"
pip_install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/optional.txt" \
  -r "$ROOT/requirements/deploy.txt" -r "$ROOT/requirements/quantize.txt"

STEP="installing mmrepghost (editable)"
pip_install --no-deps --no-build-isolation -e "$ROOT"

STEP="verifying the environment"
if ! verify >>"$PIP_LOG" 2>&1; then
  tail -n 20 "$PIP_LOG" >&2
  fail "the installed stack does not work together (mmcv.ops.nms, mmdet.models, mmpretrain.models, mmrepghost, mim); log: $PIP_LOG"
fi
echo "$FINGERPRINT" >"$STAMP"
say "environment ready: $VENV (torch $TORCH_TAG, mmcv $MMCV_VERSION $OPS_KIND)"
